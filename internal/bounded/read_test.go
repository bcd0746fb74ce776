package bounded

import (
	"errors"
	"strings"
	"testing"
	"testing/iotest"
)

func TestRead(t *testing.T) {
	if data, err := Read(strings.NewReader("12345"), 5); err != nil || string(data) != "12345" {
		t.Fatalf("at the limit: %q, %v", data, err)
	}
	if _, err := Read(strings.NewReader("123456"), 5); err == nil || err.Error() != "larger than 5 bytes" {
		t.Fatalf("over the limit: %v", err)
	}
	broken := errors.New("connection reset")
	if _, err := Read(iotest.ErrReader(broken), 5); !errors.Is(err, broken) {
		t.Fatalf("a failing reader: %v", err)
	}
}
