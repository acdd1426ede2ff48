package ctl

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"testing"
	"time"
)

var requestSeeds = []string{
	`{"v":1,"command":"status"}`,
	`{"v":1,"command":"up","name":"west-east","config":"/etc/ipsec.conf","args":{"a":"b"},"json":true}`,
	`{"v":1,"command":"debug","args":{"set":"base no-crypt"}}`,
	`{"v":2,"command":"status"}`,
	`{"v":1,"command":"nope"}`,
	`{"v":1,"command":"up"}`,
	`{"v":1.5,"command":"up"}`,
	`{"v":1,"command":"ping","args":{"set":null}}`,
	`{"v":1,"command":"ping","name":"\u0000\ud800"}`,
	`{"v":1,"command":"ping","v":2}`,
	`{`,
	`null`,
	``,
	`[]`,
	"\xff\xfe",
}

// FuzzDecodeRequest: decoding never panics; it yields either a valid
// request or an error result with a request-error status; a valid request
// survives a round trip.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, res := DecodeRequest(b)
		if (req == nil) == (res == nil) {
			t.Fatalf("DecodeRequest(%q) = %v, %v", b, req, res)
		}
		if res != nil {
			if res.Status != StatusBadRequest && res.Status != StatusUnknownCommand {
				t.Fatalf("DecodeRequest(%q): status %d", b, res.Status)
			}
			if res.Error == "" {
				t.Fatalf("DecodeRequest(%q): error result without a message", b)
			}
			return
		}
		if res := req.Validate(); res != nil {
			t.Fatalf("decoded request does not validate: %+v", res)
		}
		again, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		req2, res2 := DecodeRequest(again)
		if res2 != nil {
			t.Fatalf("re-encoded %q fails: %+v", again, res2)
		}
		if fmt.Sprint(*req) != fmt.Sprint(*req2) {
			t.Fatalf("round trip: %+v became %+v", req, req2)
		}
	})
}

func frames(bodies ...string) []byte {
	var b []byte
	for _, body := range bodies {
		b = appendFrame(b, []byte(body))
	}
	return b
}

// FuzzServerStream feeds a raw byte stream to a server connection over
// net.Pipe: the server must not panic or hang, must answer only with
// well-formed messages, and must let go of the connection when the client
// hangs up.
func FuzzServerStream(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add(frames(s))
	}
	f.Add(frames(requestSeeds...))
	f.Add(frames(`{"v":1,"command":"shutdown"}`, `{"v":1,"command":"ping"}`))
	f.Add(frames(`{"v":1,"command":"up","name":"x"}`)[:10])
	f.Add(binary.BigEndian.AppendUint32(nil, MaxRequestSize+1))
	f.Add(binary.BigEndian.AppendUint32(nil, 0xffffffff))
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0})

	h := func(ctx context.Context, req *Request, log func(string)) *Result {
		log("running " + req.Command + " " + req.Name)
		if req.Command == CmdShutdown {
			panic("fuzz panic")
		}
		res, err := WithData("ok", req)
		if err != nil {
			return Errorf(StatusFailed, "%v", err)
		}
		return res
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := NewServer(nil, h, nil)
		s.IdleTimeout = 2 * time.Second
		s.FrameTimeout = 2 * time.Second
		cli, srv := net.Pipe()
		served := make(chan struct{})
		go func() {
			defer close(served)
			s.serveConn(srv)
		}()
		readerDone := make(chan struct{})
		go func() {
			defer close(readerDone)
			for {
				b, err := readFrame(cli, MaxReplySize)
				if err != nil {
					return
				}
				var m message
				if err := json.Unmarshal(b, &m); err != nil {
					t.Errorf("server sent a malformed message %q: %v", b, err)
					return
				}
				if m.Type != msgLog && m.Type != msgResult {
					t.Errorf("server sent a message of type %q", m.Type)
				}
				if m.Type == msgResult && (m.Result == nil || m.Status < 0 || m.Status > StatusNotFound) {
					t.Errorf("server sent result %q", b)
				}
			}
		}()
		cli.Write(data) // fails once the server has hung up: fine
		cli.Close()
		select {
		case <-served:
		case <-time.After(10 * time.Second):
			t.Fatal("server connection still running after the client hung up")
		}
		<-readerDone
	})
}
