package pfkey

// Native is the dialect of this kernel: Linux's af_key.
var Native = &Linux

// afKey is PF_KEY (AF_KEY) on Linux.
const afKey = 15
