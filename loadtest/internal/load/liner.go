package load

import (
	"fmt"
	"io"
	"os"
)

// liner prints progress lines: rewritten in place on a terminal, one per
// line otherwise (a log, make's output).
type liner struct {
	w     io.Writer
	tty   bool
	wrote bool
}

func newLiner(w io.Writer) *liner {
	l := &liner{w: w}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			l.tty = true
		}
	}
	return l
}

func (l *liner) printf(format string, args ...any) {
	if l.w == nil {
		return
	}
	s := fmt.Sprintf(format, args...)
	if l.tty {
		fmt.Fprintf(l.w, "\r\033[K%s", s)
	} else {
		fmt.Fprintln(l.w, s)
	}
	l.wrote = true
}

// end finishes an in-place line so that later output starts on a new one.
func (l *liner) end() {
	if l.tty && l.wrote {
		fmt.Fprintln(l.w)
	}
}
