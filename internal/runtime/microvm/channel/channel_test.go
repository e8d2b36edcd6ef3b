package channel

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// TestResync: a new reader skips to the guest's Resumed frame with its
// nonce, whatever precedes it (half a frame, a Resumed with another
// nonce), and reads the frames after it whole.
func TestResync(t *testing.T) {
	nonce := []byte("0123456789abcdef")
	frame := func(k Kind, p []byte) []byte {
		var b bytes.Buffer
		if err := Write(&b, k, p); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	half := frame(KindStdout, []byte("the end of a frame the old agent half read"))[7:]
	var in bytes.Buffer
	in.Write(half)
	in.Write(frame(KindResumed, []byte("fedcba9876543210")))
	in.Write(frame(KindStdout, []byte("written while no host listened")))
	in.Write(frame(KindResumed, nonce))
	in.Write(frame(KindStdout, []byte("after")))
	if err := Resync(&in, nonce, 1<<20); err != nil {
		t.Fatal(err)
	}
	k, p, err := Read(&in)
	if err != nil || k != KindStdout || string(p) != "after" {
		t.Errorf("first frame after resync = %#x %q %v, want stdout \"after\"", k, p, err)
	}

	// No marker within the limit, or the stream ends: an error.
	long := bytes.Repeat([]byte{0x12}, 4096)
	if err := Resync(bytes.NewReader(long), nonce, 1024); !errors.Is(err, ErrFrame) {
		t.Errorf("resync past the limit = %v, want ErrFrame", err)
	}
	if err := Resync(bytes.NewReader(half), nonce, 1<<20); !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("resync of a stream without the marker = %v, want EOF", err)
	}
}
