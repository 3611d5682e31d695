package clustertest

import (
	"net"
	"sync"
	"testing"
)

// holdProxy forwards TCP connections from a loopback port to target, and
// can hold every byte in both directions (Hold) until Release: a link
// that has gone silent without closing, as a partition looks to both
// ends.
type holdProxy struct {
	lis    net.Listener
	target string
	gate   sync.RWMutex // write-locked while held
}

func startHoldProxy(t *testing.T, target string) *holdProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &holdProxy{lis: lis, target: target}
	t.Cleanup(func() { lis.Close() })
	go p.serve()
	return p
}

// Addr is the proxy's address, to dial instead of target.
func (p *holdProxy) Addr() string { return p.lis.Addr().String() }

// Hold stops every byte until Release.
func (p *holdProxy) Hold() { p.gate.Lock() }

// Release lets the bytes flow again.
func (p *holdProxy) Release() { p.gate.Unlock() }

func (p *holdProxy) serve() {
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return
		}
		go p.forward(c)
	}
}

func (p *holdProxy) forward(c net.Conn) {
	defer c.Close()
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		defer func() { done <- struct{}{} }()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				p.gate.RLock() // waits while the link is held
				_, werr := dst.Write(buf[:n])
				p.gate.RUnlock()
				if werr != nil {
					return
				}
			}
			if err != nil {
				return // EOF or a broken connection: close both ends
			}
		}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
}
