package esp

import (
	"encoding/binary"
	"math"
	"sync"
	"testing"
)

// TestReserveSealSeqParallel seals a batch on several goroutines with
// reserved numbers and opens it in parallel, committing in order.
func TestReserveSealSeqParallel(t *testing.T) {
	for _, s := range suites {
		t.Run(s.name, func(t *testing.T) {
			cfg := s.config(0x7000)
			cfg.ESN = true
			out, in := pair(t, cfg)
			const n = 64
			first, err := out.ReserveSeq(n)
			if err != nil || first != 1 {
				t.Fatalf("ReserveSeq: %d %v", first, err)
			}
			inner := udp4("10.0.0.1", "10.0.0.2", 1, 2, 300)
			sealed := make([][]byte, n)
			var wg sync.WaitGroup
			for w := 0; w < 4; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					for i := w; i < n; i += 4 {
						p, err := out.SealSeq(nil, inner, first+uint64(i))
						if err != nil {
							t.Error(err)
						}
						sealed[i] = p
					}
				}(w)
			}
			wg.Wait()
			opened := make([][]byte, n)
			seqs := make([]uint64, n)
			for w := 0; w < 4; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					for i := n - 1 - w; i >= 0; i -= 4 { // backwards: far apart in the window
						p, seq, err := in.OpenNoCommit(nil, sealed[i])
						if err != nil {
							t.Error(err)
						}
						opened[i], seqs[i] = p, seq
					}
				}(w)
			}
			wg.Wait()
			for i := range sealed {
				if got := binary.BigEndian.Uint32(sealed[i][4:8]); got != uint32(i+1) || seqs[i] != uint64(i+1) {
					t.Fatalf("packet %d: seq %d / %d", i, got, seqs[i])
				}
				if string(opened[i]) != string(inner) {
					t.Fatalf("packet %d differs", i)
				}
				if err := in.CommitSeq(seqs[i], len(opened[i])); err != nil {
					t.Fatalf("commit %d: %v", i, err)
				}
			}
			if err := in.CommitSeq(seqs[3], 1); err != DropReplay {
				t.Fatalf("second commit: %v", err)
			}
			if _, _, err := in.OpenNoCommit(nil, sealed[5]); err != DropReplay {
				t.Fatalf("replayed packet: %v", err)
			}
			if c := in.Counters(); c.Packets != n {
				t.Fatalf("inbound packets %d, want %d", c.Packets, n)
			}
		})
	}
}

func TestReserveSeqOverflow(t *testing.T) {
	out := mustSA(t, suites[0].config(0x7001))
	out.seqOut.Store(math.MaxUint32 - 10)
	if first, err := out.ReserveSeq(10); err != nil || first != math.MaxUint32-9 {
		t.Fatalf("last ten: %d %v", first, err)
	}
	if _, err := out.ReserveSeq(2); err != DropSeqOverflow {
		t.Fatalf("past the end: %v", err)
	}
	if !out.Expired() {
		t.Fatal("not expired")
	}
	if _, err := out.ReserveSeq(1); err != DropExpired {
		t.Fatalf("after expiry: %v", err)
	}
}

func TestSealSeqZeroAllocs(t *testing.T) {
	out := mustSA(t, suites[0].config(0x7002))
	inner := udp4("10.0.0.1", "10.0.0.2", 1, 2, 1400)
	buf := make([]byte, 0, 2048)
	if a := testing.AllocsPerRun(100, func() {
		seq, _ := out.ReserveSeq(1)
		out.SealSeq(buf, inner, seq)
	}); a != 0 {
		t.Fatalf("%v allocs", a)
	}
}
