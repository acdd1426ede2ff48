package pfkey

// Native is the dialect of this kernel: NetBSD's.
var Native = &NetBSD

// afKey is PF_KEY (pseudo_AF_KEY) on NetBSD.
const afKey = 29
