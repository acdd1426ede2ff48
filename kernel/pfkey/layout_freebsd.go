package pfkey

// Native is the dialect of this kernel: FreeBSD's.
var Native = &FreeBSD

// afKey is PF_KEY (pseudo_AF_KEY) on FreeBSD.
const afKey = 27
