// Package bounded reads what comes from elsewhere (a file, a service's
// answer, a client's body) with a limit, so that nothing outside can make
// the process hold more than it expects.
package bounded

import (
	"fmt"
	"io"
)

// Read reads all of r, and fails when it holds more than max bytes.
func Read(r io.Reader, max int) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, int64(max)+1))
	switch {
	case err != nil:
		return nil, err
	case len(data) > max:
		return nil, fmt.Errorf("larger than %d bytes", max)
	}
	return data, nil
}
