// Command realnet is the Go side of the real tailnet the tests run spacetail against: tailnet
// nodes made with tsnet (tailscale.com at spacetail's DEFAULT_VERSION), joined to a real control
// server (headscale) that listens on loopback.
//
//   - the service node: an HTTP service (:80), TCP relays to a local PostgreSQL (:5432) and a
//     local sshd (:22), a service the read tags may not reach (:7000);
//   - the DNS server of a split-DNS zone that the control server hands to every node, on a
//     loopback address (port 53, UDP and TCP): tailscaled's forwarder sends UDP queries through
//     the host's own stack, never through the tailnet, so a nameserver at a tailnet address
//     would send packets off loopback;
//   - the offline peer: a node that joins, then goes away without logging out;
//   - a control endpoint on 127.0.0.1 for what a test asks of the service node (an SSH client
//     into another node over Tailscale SSH, a dial from the service node).
//
// Keys come in the environment (REALNET_SERVICE_KEY, REALNET_OFFLINE_KEY), never on the
// command line. Once everything is up, one JSON line on stdout says what runs where; the
// program then serves until SIGTERM or SIGINT.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/net/dns/dnsmessage"
	"tailscale.com/tsnet"
)

type options struct {
	control   string
	dir       string
	postgres  string
	sshd      string
	zone      string
	service   string
	offline   string
	listen    string
	dnsListen string
	upTimeout time.Duration
}

type nodeInfo struct {
	Name string   `json:"name"`
	FQDN string   `json:"fqdn"`
	IPs  []string `json:"ips"`
}

type ready struct {
	Control  string            `json:"control"`
	Service  nodeInfo          `json:"service"`
	Offline  nodeInfo          `json:"offline"`
	Ports    map[string]int    `json:"ports"`
	SplitDNS map[string]string `json:"split_dns"`
}

func main() {
	var o options
	flag.StringVar(&o.control, "control-url", "", "the control server's URL")
	flag.StringVar(&o.dir, "dir", "", "a folder for the nodes' state (fresh)")
	flag.StringVar(&o.postgres, "postgres", "", "HOST:PORT of the PostgreSQL to relay to")
	flag.StringVar(&o.sshd, "sshd", "", "HOST:PORT of the sshd to relay to")
	flag.StringVar(&o.zone, "zone", "corp.internal", "the split-DNS zone")
	flag.StringVar(&o.dnsListen, "dns-listen", "", "LOOPBACK-IP:53 for the split-DNS zone's server")
	flag.StringVar(&o.service, "service-name", "realnet-svc", "the service node's hostname")
	flag.StringVar(&o.offline, "offline-name", "realnet-gone", "the offline peer's hostname")
	flag.StringVar(&o.listen, "listen", "127.0.0.1:0", "the control endpoint's address")
	flag.DurationVar(&o.upTimeout, "up-timeout", 60*time.Second, "how long a node may take to join")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "realnet: %v\n", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if o.control == "" || o.dir == "" || o.postgres == "" || o.sshd == "" || o.dnsListen == "" {
		return errors.New("-control-url, -dir, -postgres, -sshd and -dns-listen are required")
	}
	for _, addr := range []string{o.postgres, o.sshd, o.listen, o.dnsListen} {
		if err := loopbackOnly(addr); err != nil {
			return err
		}
	}
	serviceKey, offlineKey := os.Getenv("REALNET_SERVICE_KEY"), os.Getenv("REALNET_OFFLINE_KEY")
	if serviceKey == "" || offlineKey == "" {
		return errors.New("REALNET_SERVICE_KEY and REALNET_OFFLINE_KEY must be set")
	}
	for _, name := range []string{"REALNET_SERVICE_KEY", "REALNET_OFFLINE_KEY"} {
		os.Unsetenv(name)
	}
	logFile, err := os.OpenFile(filepath.Join(o.dir, "tsnet.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	logf := log.New(logFile, "", log.LstdFlags|log.Lmicroseconds).Printf

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	// The split-DNS zone's server listens before any node joins: the control server already
	// names it as the zone's nameserver.
	dnsConn, err := net.ListenPacket("udp", o.dnsListen)
	if err != nil {
		return fmt.Errorf("split-DNS server: %w", err)
	}
	dnsListener, err := net.Listen("tcp", o.dnsListen)
	if err != nil {
		return fmt.Errorf("split-DNS server: %w", err)
	}

	svc, err := join(ctx, o, o.service, serviceKey, logf)
	if err != nil {
		return fmt.Errorf("service node: %w", err)
	}
	defer svc.srv.Close()

	// The offline peer joins, then leaves without a logout: the control server keeps it,
	// offline (its key is not ephemeral).
	offline, err := join(ctx, o, o.offline, offlineKey, logf)
	if err != nil {
		return fmt.Errorf("offline peer: %w", err)
	}
	offlineInfo := offline.info
	offline.srv.Close()

	ip4 := svc.ip4
	records := map[string]string{"db." + o.zone + ".": ip4.String()}
	ports := map[string]int{"http": 80, "postgres": 5432, "ssh": 22, "write_only": 7000}

	var serveErr = make(chan error, 8)
	listen := func(port int) net.Listener {
		ln, err := svc.srv.Listen("tcp", ":"+strconv.Itoa(port))
		if err != nil {
			serveErr <- fmt.Errorf("listen on the service node's :%d: %w", port, err)
			return nil
		}
		return ln
	}
	if ln := listen(80); ln != nil {
		go func() { serveErr <- http.Serve(ln, httpService("http")) }()
	}
	if ln := listen(7000); ln != nil {
		go func() { serveErr <- http.Serve(ln, httpService("write_only")) }()
	}
	if ln := listen(5432); ln != nil {
		go relay(ln, o.postgres, logf)
	}
	if ln := listen(22); ln != nil {
		go relay(ln, o.sshd, logf)
	}
	go serveDNSTCP(dnsListener, records, logf)
	go serveDNSUDP(dnsConn, records, logf)

	control, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("control endpoint: %w", err)
	}
	go func() { serveErr <- http.Serve(control, controlAPI(svc.srv)) }()

	split := map[string]string{}
	for name, addr := range records {
		split[strings.TrimSuffix(name, ".")] = addr
	}
	line, _ := json.Marshal(ready{
		Control:  control.Addr().String(),
		Service:  svc.info,
		Offline:  offlineInfo,
		Ports:    ports,
		SplitDNS: split,
	})
	fmt.Println(string(line))

	select {
	case <-ctx.Done():
		return nil
	case err := <-serveErr:
		return err
	}
}

func loopbackOnly(hostport string) error {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("%q: %w", hostport, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return fmt.Errorf("%q is not a loopback address: realnet touches loopback only", hostport)
	}
	return nil
}

type node struct {
	srv  *tsnet.Server
	ip4  netip.Addr
	info nodeInfo
}

// join starts a tsnet node with a fresh state folder (an existing state would ignore the key)
// and returns once it is Running with its addresses.
func join(ctx context.Context, o options, name, key string, logf func(string, ...any)) (*node, error) {
	dir := filepath.Join(o.dir, name)
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	srv := &tsnet.Server{
		Dir:        dir,
		Hostname:   name,
		AuthKey:    key,
		ControlURL: o.control,
		Logf:       func(f string, a ...any) { logf(name+": "+f, a...) },
		UserLogf:   func(f string, a ...any) { logf(name+" (user): "+f, a...) },
	}
	upCtx, cancel := context.WithTimeout(ctx, o.upTimeout)
	defer cancel()
	status, err := srv.Up(upCtx)
	if err != nil {
		srv.Close()
		return nil, fmt.Errorf("did not reach Running within %s: %w", o.upTimeout, err)
	}
	n := &node{srv: srv}
	for _, ip := range status.TailscaleIPs {
		n.info.IPs = append(n.info.IPs, ip.String())
		if ip.Is4() {
			n.ip4 = ip
		}
	}
	if !n.ip4.IsValid() {
		srv.Close()
		return nil, errors.New("no IPv4 tailnet address")
	}
	n.info.Name = name
	if status.Self != nil {
		n.info.FQDN = strings.TrimSuffix(status.Self.DNSName, ".")
	}
	return n, nil
}

// httpService answers every request with the service's name and the path, and /blob?bytes=N
// with N zero bytes (for the bench).
func httpService(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/blob" {
			n, err := strconv.ParseInt(r.URL.Query().Get("bytes"), 10, 64)
			if err != nil || n < 0 {
				http.Error(w, "bytes=N", http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
			io.CopyN(w, zeros{}, n)
			return
		}
		fmt.Fprintf(w, "realnet %s ok %s\n", name, r.URL.Path)
	})
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// relay carries each tailnet connection to TARGET on loopback, both ways, half-closes included.
func relay(ln net.Listener, target string, logf func(string, ...any)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			t, err := net.DialTimeout("tcp", target, 10*time.Second)
			if err != nil {
				logf("relay to %s: %v", target, err)
				return
			}
			defer t.Close()
			var wg sync.WaitGroup
			wg.Add(2)
			pipe := func(dst, src net.Conn) {
				defer wg.Done()
				io.Copy(dst, src)
				if cw, ok := dst.(interface{ CloseWrite() error }); ok {
					cw.CloseWrite()
				} else {
					dst.Close()
				}
			}
			go pipe(t, c)
			go pipe(c, t)
			wg.Wait()
		}()
	}
}

// answer builds the reply to one DNS query: an A record for a name of RECORDS, NXDOMAIN for
// another name of the zone, nothing else.
func answer(query []byte, records map[string]string) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, err
	}
	q, err := p.Question()
	if err != nil {
		return nil, err
	}
	h.Response, h.Authoritative, h.RecursionAvailable = true, true, false
	h.RCode = dnsmessage.RCodeSuccess
	b := dnsmessage.NewBuilder(nil, h)
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	addr, known := records[strings.ToLower(q.Name.String())]
	if !known {
		h.RCode = dnsmessage.RCodeNameError
		b = dnsmessage.NewBuilder(nil, h)
		b.StartQuestions()
		b.Question(q)
		return b.Finish()
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	if q.Type == dnsmessage.TypeA || q.Type == dnsmessage.TypeALL {
		ip := netip.MustParseAddr(addr).As4()
		rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}
		if err := b.AResource(rh, dnsmessage.AResource{A: ip}); err != nil {
			return nil, err
		}
	}
	return b.Finish()
}

// describe says what a query asked and what its reply answered, for the log.
func describe(query, reply []byte) string {
	var q, r dnsmessage.Message
	if q.Unpack(query) != nil || r.Unpack(reply) != nil || len(q.Questions) == 0 {
		return "(unparsable)"
	}
	return fmt.Sprintf("%s %s -> %s, %d answers", q.Questions[0].Name, q.Questions[0].Type, r.RCode, len(r.Answers))
}

func serveDNSUDP(pc net.PacketConn, records map[string]string, logf func(string, ...any)) {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		reply, err := answer(buf[:n], records)
		if err != nil {
			logf("dns: %v", err)
			continue
		}
		logf("dns: udp query from %v: %s", from, describe(buf[:n], reply))
		pc.WriteTo(reply, from)
	}
}

func serveDNSTCP(ln net.Listener, records map[string]string, logf func(string, ...any)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			var size [2]byte
			for {
				if _, err := io.ReadFull(c, size[:]); err != nil {
					return
				}
				query := make([]byte, int(size[0])<<8|int(size[1]))
				if _, err := io.ReadFull(c, query); err != nil {
					return
				}
				reply, err := answer(query, records)
				if err != nil {
					logf("dns: %v", err)
					return
				}
				c.Write(append([]byte{byte(len(reply) >> 8), byte(len(reply))}, reply...))
			}
		}()
	}
}

type sshRequest struct {
	Host    string  `json:"host"`
	Port    int     `json:"port"`
	User    string  `json:"user"`
	Command string  `json:"command"`
	Timeout float64 `json:"timeout"`
}

type sshReply struct {
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
	Exit   int    `json:"exit"`
	Error  string `json:"error,omitempty"`
}

// controlAPI serves the tests on loopback:
//
//	POST /ssh {"host","port","user","command","timeout"}: an SSH client on the service node,
//	     without any credential (Tailscale SSH authenticates the node), runs COMMAND;
//	GET  /dial?addr=HOST:PORT&timeout=SECONDS: a TCP connection from the service node;
//	GET  /health: ok.
func controlAPI(srv *tsnet.Server) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /dial", func(w http.ResponseWriter, r *http.Request) {
		seconds, _ := strconv.ParseFloat(r.URL.Query().Get("timeout"), 64)
		ctx, cancel := context.WithTimeout(r.Context(), duration(seconds, 5))
		defer cancel()
		c, err := srv.Dial(ctx, "tcp", r.URL.Query().Get("addr"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		c.Close()
		io.WriteString(w, "connected\n")
	})
	mux.HandleFunc("POST /ssh", func(w http.ResponseWriter, r *http.Request) {
		var req sshRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if req.Port == 0 {
			req.Port = 22
		}
		reply := runSSH(r.Context(), srv, req)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(reply)
	})
	return mux
}

func duration(seconds, fallback float64) time.Duration {
	if seconds <= 0 {
		seconds = fallback
	}
	return time.Duration(seconds * float64(time.Second))
}

func runSSH(ctx context.Context, srv *tsnet.Server, req sshRequest) sshReply {
	ctx, cancel := context.WithTimeout(ctx, duration(req.Timeout, 20))
	defer cancel()
	addr := net.JoinHostPort(req.Host, strconv.Itoa(req.Port))
	conn, err := srv.Dial(ctx, "tcp", addr)
	if err != nil {
		return sshReply{Exit: -1, Error: "dial " + addr + ": " + err.Error()}
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}
	config := &ssh.ClientConfig{
		User:            req.User,
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), // a test's own node, on loopback
		Timeout:         duration(req.Timeout, 20),
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, config)
	if err != nil {
		return sshReply{Exit: -1, Error: "ssh handshake: " + err.Error()}
	}
	client := ssh.NewClient(c, chans, reqs)
	defer client.Close()
	session, err := client.NewSession()
	if err != nil {
		return sshReply{Exit: -1, Error: "ssh session: " + err.Error()}
	}
	defer session.Close()
	var stdout, stderr bytes.Buffer
	session.Stdout, session.Stderr = &stdout, &stderr
	reply := sshReply{}
	if err := session.Run(req.Command); err != nil {
		var exit *ssh.ExitError
		if errors.As(err, &exit) {
			reply.Exit = exit.ExitStatus()
		} else {
			reply.Exit, reply.Error = -1, err.Error()
		}
	}
	reply.Stdout, reply.Stderr = stdout.String(), stderr.String()
	return reply
}
