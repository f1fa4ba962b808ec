package testenv

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
)

// AWSProxy lets a program that cannot be pointed at an endpoint (GitLab's Fargate driver builds
// its aws-sdk-go v1 session from the region alone) reach the stand-ins: it is an HTTP proxy for
// HTTPS_PROXY=URL() that answers CONNECT for the AWS hosts it was given (ecs.REGION.amazonaws.com:443
// and the like), terminates TLS there with a certificate from its own CA (give the program
// AWS_CA_BUNDLE=a file holding CAPEM()) and serves the requests with that host's stand-in
// handler. CONNECT to any other host is refused with 403 and recorded (Refused), so a program
// reaching out to the real AWS fails loudly instead of leaving the machine.
type AWSProxy struct {
	ca    *CA
	ln    net.Listener
	hosts map[string]http.Handler // host without port -> handler
	inner *http.Server            // serves the TLS connections CONNECT opened
	conns *connListener

	mu       sync.Mutex
	accepted []string
	refused  []string
}

// NewAWSProxy starts a proxy on a random 127.0.0.1 port that serves each host (a DNS name,
// e.g. "ecs.us-east-2.amazonaws.com") with its handler on port 443. Close it when done.
func NewAWSProxy(hosts map[string]http.Handler) (*AWSProxy, error) {
	ca, err := NewCA()
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(hosts))
	for h := range hosts {
		names = append(names, h)
	}
	cert, err := ca.Issue(names...)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &AWSProxy{ca: ca, ln: ln, hosts: hosts, conns: newConnListener(ln.Addr())}
	p.inner = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			host, _, err := net.SplitHostPort(r.Host)
			if err != nil {
				host = r.Host
			}
			h, ok := p.hosts[host]
			if !ok {
				http.Error(w, "no stand-in for host "+r.Host, http.StatusMisdirectedRequest)
				return
			}
			h.ServeHTTP(w, r)
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
	}
	go func() { _ = p.inner.ServeTLS(p.conns, "", "") }()
	go p.serve()
	return p, nil
}

// URL is the proxy for HTTPS_PROXY: http://127.0.0.1:PORT.
func (p *AWSProxy) URL() string { return "http://" + p.ln.Addr().String() }

// CAPEM is the PEM certificate of the CA the proxy's TLS certificates come from.
func (p *AWSProxy) CAPEM() []byte { return p.ca.PEM() }

// Accepted returns the CONNECT targets (host:port) the proxy served, in order.
func (p *AWSProxy) Accepted() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.accepted...)
}

// Refused returns the requests the proxy refused ("CONNECT sts.amazonaws.com:443", "GET
// http://...").
func (p *AWSProxy) Refused() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.refused...)
}

// Close stops the proxy and every connection through it.
func (p *AWSProxy) Close() {
	_ = p.ln.Close()
	_ = p.inner.Close()
}

func (p *AWSProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.handshake(c)
	}
}

// handshake reads the CONNECT request on c and either refuses it or hands the connection, now a
// tunnel to "the host", to the TLS server.
func (p *AWSProxy) handshake(c net.Conn) {
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		_ = c.Close()
		return
	}
	refuse := func(status int, what, why string) {
		p.mu.Lock()
		p.refused = append(p.refused, what)
		p.mu.Unlock()
		_, _ = fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
			status, http.StatusText(status), len(why), why)
		_ = c.Close()
	}
	if req.Method != http.MethodConnect {
		refuse(http.StatusMethodNotAllowed, req.Method+" "+req.URL.String(), "this proxy only tunnels HTTPS (CONNECT) to the AWS stand-ins\n")
		return
	}
	host, port, err := net.SplitHostPort(req.Host)
	if _, ok := p.hosts[strings.ToLower(host)]; err != nil || port != "443" || !ok {
		refuse(http.StatusForbidden, "CONNECT "+req.Host, "no stand-in for "+req.Host+": the test proxy reaches only the stand-ins it was given\n")
		return
	}
	if br.Buffered() > 0 { // a client that did not wait for the answer: not one we serve
		refuse(http.StatusBadRequest, "CONNECT "+req.Host, "data before the CONNECT answer\n")
		return
	}
	p.mu.Lock()
	p.accepted = append(p.accepted, req.Host)
	p.mu.Unlock()
	if _, err := fmt.Fprint(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		_ = c.Close()
		return
	}
	if !p.conns.put(c) {
		_ = c.Close()
	}
}

// connListener is a net.Listener fed with connections by hand (the tunnels CONNECT opened).
type connListener struct {
	addr   net.Addr
	ch     chan net.Conn
	once   sync.Once
	closed chan struct{}
}

func newConnListener(addr net.Addr) *connListener {
	return &connListener{addr: addr, ch: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *connListener) put(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.closed:
		return false
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }
