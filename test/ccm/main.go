// Command ccmrun drives Linode's cloud controller manager (the CCM's own
// cloud/linode load-balancer code, built from source) against a running
// nodebalancer server, with in-memory Services and Nodes and a fake Kubernetes
// clientset: one Service's whole life through EnsureLoadBalancer,
// UpdateLoadBalancer and EnsureLoadBalancerDeleted, with real traffic through the
// balancer to loopback backends after each step.
//
// It is not part of nodebalancer's module (it has its own go.mod, and the CCM and
// linodego/v2 are not on the module proxy): run.sh fetches nothing, it builds this
// against source trees extracted beforehand. See README.md beside it.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"strings"
	"time"

	"github.com/linode/linodego/v2"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	cloudprovider "k8s.io/cloud-provider"

	"github.com/linode/linode-cloud-controller-manager/cloud/linode"
	"github.com/linode/linode-cloud-controller-manager/cloud/linode/options"
)

const ann = "service.beta.kubernetes.io/linode-loadbalancer-"

func main() {
	url := flag.String("url", "http://127.0.0.1:8080", "nodebalancer API URL (LINODE_URL)")
	token := flag.String("token", os.Getenv("LINODE_API_TOKEN"), "API token (LINODE_API_TOKEN)")
	region := flag.String("region", "local", "the server's region (LINODE_REGION)")
	nodeIPs := flag.String("nodes", "127.0.60.1,127.0.60.2", "loopback addresses standing for the cluster's nodes")
	flag.Parse()
	if err := run(*url, *token, *region, strings.Split(*nodeIPs, ",")); err != nil {
		fmt.Println("FAIL:", err)
		os.Exit(1)
	}
	fmt.Println("PASS: the CCM's load-balancer code drove a Service's whole life against nodebalancer")
}

// step prints what the CCM is about to do.
func step(format string, a ...any) { fmt.Printf("\n== "+format+"\n", a...) }

func run(url, token, region string, nodeIPs []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// The CCM reads its settings from the environment, as in a cluster.
	os.Setenv("LINODE_URL", url)
	os.Setenv("LINODE_API_TOKEN", token)
	os.Setenv("LINODE_REGION", region)
	options.Options.NodeBalancerPrefix = "ccm" // the --nodebalancer-prefix default
	options.Options.EnableTokenHealthChecker = true

	// Backends: one HTTP server per node address on the Service's node ports.
	const httpNodePort, tcpNodePort, tlsNodePort, udpNodePort = 30080, 30081, 30443, 30053
	for _, ip := range nodeIPs {
		stop, err := serveUDPEcho(ip, udpNodePort)
		if err != nil {
			return err
		}
		defer stop()
		// 8053 is the udp port's udp_check_port: its connection check dials it.
		for _, p := range []int{httpNodePort, tcpNodePort, tlsNodePort, 8053} {
			stop, err := serveBackend(ip, p)
			if err != nil {
				return err
			}
			defer stop()
		}
	}

	step("start the CCM's cloud provider with a wrong token (--enable-token-health-checker: GET /v4/profile)")
	os.Setenv("LINODE_API_TOKEN", "not-a-token-of-this-server")
	if _, err := cloudprovider.GetCloudProvider(linode.ProviderName, nil); err == nil {
		return errors.New("the CCM started with a wrong token")
	} else {
		fmt.Println("refused as it should be:", err)
	}
	os.Setenv("LINODE_API_TOKEN", token)

	step("start the CCM's cloud provider with the right token")
	cloud, err := cloudprovider.GetCloudProvider(linode.ProviderName, nil)
	if err != nil {
		return fmt.Errorf("start cloud provider: %w", err)
	}
	lb, ok := cloud.LoadBalancer()
	if !ok {
		return errors.New("the CCM offers no load balancer")
	}
	kube := fake.NewClientset()
	linode.NodebalancerDriverSetKubeClient(lb, kube)
	fmt.Println("cloud provider", cloud.ProviderName(), "started")

	// A linodego/v2 client of our own, to reserve an address and look at results.
	base, err := linodego.NewClient(nil)
	if err != nil {
		return err
	}
	api, err := base.UseURL(url)
	if err != nil {
		return err
	}
	api.SetToken(token)
	prof, err := api.GetProfile(ctx)
	if err != nil {
		return fmt.Errorf("GetProfile: %w", err)
	}
	fmt.Printf("profile: uid %d username %s restricted %v\n", prof.UID, prof.Username, prof.Restricted)

	step("reserve an address for the Service: POST /v4/networking/reserved/ips")
	rip, err := api.ReserveIPAddress(ctx, linodego.ReserveIPOptions{Region: region})
	if err != nil {
		return fmt.Errorf("reserve ip: %w", err)
	}
	fmt.Printf("reserved %s in %s\n", rip.Address, rip.Region)

	certPEM, keyPEM, err := selfSigned("web.example.test")
	if err != nil {
		return err
	}
	secret := &v1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "web-tls", Namespace: "default"},
		Type:       v1.SecretTypeTLS,
		Data:       map[string][]byte{v1.TLSCertKey: certPEM, v1.TLSPrivateKeyKey: keyPEM},
	}
	if _, err := kube.CoreV1().Secrets("default").Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		return err
	}

	var nodes []*v1.Node
	for i, ip := range nodeIPs {
		nodes = append(nodes, &v1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node-%d", i+1)},
			Status:     v1.NodeStatus{Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: ip}}},
		})
	}
	svc := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web", Namespace: "default", UID: "1234",
			Annotations: map[string]string{
				ann + "default-protocol":     "http",
				ann + "port-80":              `{"stickiness":"http_cookie"}`,
				ann + "check-type":           "http",
				ann + "check-path":           "/healthz",
				ann + "throttle":             "5",
				ann + "default-algorithm":    "leastconn",
				ann + "tags":                 "team-web,env-test",
				ann + "reserved-ipv4":        rip.Address,
				ann + "retain-reserved-ipv4": "false",
			},
		},
		Spec: v1.ServiceSpec{
			Type:  v1.ServiceTypeLoadBalancer,
			Ports: []v1.ServicePort{{Name: "http", Protocol: v1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt(8080), NodePort: httpNodePort}},
		},
	}
	if _, err := kube.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return err
	}

	step("EnsureLoadBalancer: create (http, http_cookie, check http, throttle 5, leastconn, tags, reserved ipv4)")
	status, err := lb.EnsureLoadBalancer(ctx, "demo", svc, nodes)
	if err != nil {
		return fmt.Errorf("EnsureLoadBalancer: %w", err)
	}
	svc.Status.LoadBalancer = *status
	if _, err := kube.CoreV1().Services("default").UpdateStatus(ctx, svc, metav1.UpdateOptions{}); err != nil {
		return err
	}
	ip := status.Ingress[0].IP
	fmt.Printf("ingress ip %s hostname %s\n", ip, status.Ingress[0].Hostname)
	if ip != rip.Address {
		return fmt.Errorf("the NodeBalancer got %s, not the reserved %s", ip, rip.Address)
	}
	if err := show(ctx, api, ip); err != nil {
		return err
	}
	if err := traffic("http://"+ip+":80/", 8, true); err != nil {
		return err
	}

	update := func(what string) error {
		step("UpdateLoadBalancer: %s", what)
		if _, err := kube.CoreV1().Services("default").Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
			return err
		}
		if err := lb.UpdateLoadBalancer(ctx, "demo", svc, nodes); err != nil {
			return fmt.Errorf("UpdateLoadBalancer (%s): %w", what, err)
		}
		return show(ctx, api, ip)
	}

	svc.Spec.Ports = append(svc.Spec.Ports,
		v1.ServicePort{Name: "raw", Protocol: v1.ProtocolTCP, Port: 8081, NodePort: tcpNodePort},
		v1.ServicePort{Name: "https", Protocol: v1.ProtocolTCP, Port: 443, NodePort: tlsNodePort})
	svc.Annotations[ann+"port-8081"] = `{"protocol":"tcp"}`
	svc.Annotations[ann+"port-443"] = `{"protocol":"https","tls-secret-name":"web-tls"}`
	if err := update("add ports 8081 (tcp) and 443 (https with the TLS Secret)"); err != nil {
		return err
	}
	if err := traffic("https://"+ip+":443/", 4, false); err != nil {
		return err
	}
	if err := traffic("http://"+ip+":8081/", 4, false); err != nil {
		return err
	}

	svc.Annotations[ann+"port-80"] = `{"protocol":"tcp","proxy-protocol":"v2"}`
	if err := update("port 80 from http+http_cookie to tcp+proxy_protocol v2 (rebuild without stickiness)"); err != nil {
		return err
	}

	svc.Annotations[ann+"port-80"] = `{"protocol":"http","stickiness":"table"}`
	svc.Annotations[ann+"throttle"] = "0"
	svc.Annotations[ann+"default-algorithm"] = "roundrobin"
	svc.Annotations[ann+"check-type"] = "connection"
	svc.Annotations[ann+"tags"] = "team-web"
	if err := update("port 80 back to http (stickiness table), throttle 0, roundrobin, check connection, one tag"); err != nil {
		return err
	}
	if err := traffic("http://"+ip+":80/", 8, false); err != nil {
		return err
	}

	svc.Spec.Ports = append(svc.Spec.Ports, v1.ServicePort{Name: "dns", Protocol: v1.ProtocolUDP, Port: 5353, NodePort: udpNodePort})
	svc.Annotations[ann+"udp-check-port"] = "8053"
	// The CCM lets default-protocol (http here) override a UDP port's own protocol,
	// so the port says udp itself.
	svc.Annotations[ann+"port-5353"] = `{"protocol":"udp"}`
	if err := update("add a UDP port 5353 (udp-check-port 8053)"); err != nil {
		return err
	}
	if err := udpTraffic(ip+":5353", 6); err != nil {
		return err
	}

	// Clients: the default source address (127.0.0.1) and one bound to 127.0.61.1.
	const other = "127.0.61.1"
	svc.Annotations[ann+"firewall-acl"] = `{"allowList":{"ipv4":["127.0.0.1/32"]}}`
	if err := update("firewall-acl allowList 127.0.0.1/32 (a firewall created and attached)"); err != nil {
		return err
	}
	if err := firewallCheck(ctx, api, ip+":80", map[string]bool{"": true, other: false}); err != nil {
		return err
	}
	svc.Annotations[ann+"firewall-acl"] = `{"allowList":{"ipv4":["` + other + `/32"]}}`
	if err := update("firewall-acl changed to allowList " + other + "/32 (its rules replaced)"); err != nil {
		return err
	}
	if err := firewallCheck(ctx, api, ip+":80", map[string]bool{"": false, other: true}); err != nil {
		return err
	}
	delete(svc.Annotations, ann+"firewall-acl")
	if err := update("firewall-acl removed (detached, and the unused firewall deleted)"); err != nil {
		return err
	}
	if err := firewallCheck(ctx, api, ip+":80", map[string]bool{"": true, other: true}); err != nil {
		return err
	}

	svc.Spec.Ports = svc.Spec.Ports[:2]
	delete(svc.Annotations, ann+"port-443")
	delete(svc.Annotations, ann+"port-5353")
	nodes = nodes[:1]
	if err := update("remove ports 443 and 5353, and node-2"); err != nil {
		return err
	}

	step("EnsureLoadBalancerDeleted (retain-reserved-ipv4 false: the reserved address is released first)")
	if err := lb.EnsureLoadBalancerDeleted(ctx, "demo", svc); err != nil {
		return fmt.Errorf("EnsureLoadBalancerDeleted: %w", err)
	}
	nbs, err := api.ListNodeBalancers(ctx, nil)
	if err != nil {
		return err
	}
	rips, err := api.ListReservedIPAddresses(ctx, nil)
	if err != nil {
		return err
	}
	fmt.Printf("after delete: %d NodeBalancers, %d reserved addresses\n", len(nbs), len(rips))
	if len(nbs) != 0 || len(rips) != 0 {
		return errors.New("the NodeBalancer or its reserved address was left behind")
	}
	return nil
}

// show prints the NodeBalancer at ip and its configs as the server stores them.
func show(ctx context.Context, api *linodego.Client, ip string) error {
	f, _ := json.Marshal(map[string]string{"ipv4": ip})
	nbs, err := api.ListNodeBalancers(ctx, &linodego.ListOptions{Filter: string(f)})
	if err != nil {
		return err
	}
	if len(nbs) != 1 {
		return fmt.Errorf("%d NodeBalancers at %s", len(nbs), ip)
	}
	nb := nbs[0]
	fmt.Printf("nodebalancer %d %s ipv4 %s throttle %d tags %v\n", nb.ID, *nb.Label, *nb.IPv4, nb.ClientConnThrottle, nb.Tags)
	cfgs, err := api.ListNodeBalancerConfigs(ctx, nb.ID, nil)
	if err != nil {
		return err
	}
	for _, c := range cfgs {
		nodes, err := api.ListNodeBalancerNodes(ctx, nb.ID, c.ID, nil)
		if err != nil {
			return err
		}
		var ns []string
		for _, n := range nodes {
			ns = append(ns, fmt.Sprintf("%d:%s(%s)", n.ID, n.Address, n.Status))
		}
		cn := ""
		if c.SSLCommonName != "" {
			cn = " cert CN " + c.SSLCommonName
		}
		if c.Protocol == linodego.ProtocolUDP {
			cn = fmt.Sprintf(" udp_check_port %d check_passive %v", c.UDPCheckPort, c.CheckPassive)
		}
		fmt.Printf("  config %d port %d %s algorithm %s stickiness %s check %s proxy_protocol %s%s nodes %v\n",
			c.ID, c.Port, c.Protocol, c.Algorithm, c.Stickiness, c.Check, c.ProxyProtocol, cn, ns)
	}
	return nil
}

// traffic sends n requests to url and prints which backend answered each.
func traffic(url string, n int, cookies bool) error {
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	if cookies {
		c.Jar, _ = cookiejar.New(nil)
	}
	var got []string
	var err error
	for range n {
		// The data plane converges within a second of a change; retry briefly.
		var b []byte
		for try := 0; try < 20; try++ {
			var resp *http.Response
			resp, err = c.Get(url)
			if err == nil {
				b, err = io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil {
					break
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			return fmt.Errorf("GET %s: %w", url, err)
		}
		got = append(got, strings.TrimSpace(string(b)))
	}
	fmt.Printf("GET %s x%d (cookies %v): %v\n", url, n, cookies, got)
	return nil
}

// udpTraffic sends n datagrams to addr, each from a new socket, and prints who
// answered.
func udpTraffic(addr string, n int) error {
	var got []string
	for range n {
		var reply string
		var err error
		for try := 0; try < 20; try++ {
			if reply, err = udpAsk(addr); err == nil {
				break
			}
		}
		if err != nil {
			return fmt.Errorf("udp %s: %w", addr, err)
		}
		got = append(got, reply)
	}
	fmt.Printf("UDP %s x%d: %v\n", addr, n, got)
	return nil
}

func udpAsk(addr string) (string, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := c.Write([]byte("who?")); err != nil {
		return "", err
	}
	b := make([]byte, 512)
	n, err := c.Read(b)
	return string(b[:n]), err
}

// serveUDPEcho answers every datagram with its own address.
func serveUDPEcho(ip string, port int) (func(), error) {
	addr := net.JoinHostPort(ip, fmt.Sprint(port))
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, err
	}
	go func() {
		b := make([]byte, 512)
		for {
			_, from, err := c.ReadFrom(b)
			if err != nil {
				return
			}
			c.WriteTo([]byte(addr), from)
		}
	}()
	return func() { c.Close() }, nil
}

// firewallCheck prints the firewalls attached to the NodeBalancer at front's address
// and waits (up to 5 s) until each client source address ("" for the default) is
// served or dropped on front as want says.
func firewallCheck(ctx context.Context, api *linodego.Client, front string, want map[string]bool) error {
	host, _, _ := net.SplitHostPort(front)
	f, _ := json.Marshal(map[string]string{"ipv4": host})
	nbs, err := api.ListNodeBalancers(ctx, &linodego.ListOptions{Filter: string(f)})
	if err != nil || len(nbs) != 1 {
		return fmt.Errorf("NodeBalancer at %s: %d, %v", host, len(nbs), err)
	}
	fws, err := api.ListNodeBalancerFirewalls(ctx, nbs[0].ID, nil)
	if err != nil {
		return err
	}
	all, err := api.ListFirewalls(ctx, nil)
	if err != nil {
		return err
	}
	for _, fw := range fws {
		fmt.Printf("  firewall %d %s inbound_policy %s rules %+v\n", fw.ID, fw.Label, fw.Rules.InboundPolicy, fw.Rules.Inbound)
	}
	fmt.Printf("  %d firewall(s) attached, %d on the server\n", len(fws), len(all))
	for src, served := range want {
		deadline := time.Now().Add(5 * time.Second)
		for {
			got := tcpServed(src, front)
			if got == served {
				name := src
				if name == "" {
					name = "default source"
				}
				fmt.Printf("  client %s → %s: served %v\n", name, front, got)
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("client %q → %s: served %v, want %v", src, front, got, served)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// tcpServed reports whether an HTTP request from src to front got an answer.
func tcpServed(src, front string) bool {
	d := &net.Dialer{Timeout: time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	resp, err := c.Get("http://" + front + "/")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

// serveBackend answers every request with its own address, and /healthz with ok.
func serveBackend(ip string, port int) (func(), error) {
	addr := net.JoinHostPort(ip, fmt.Sprint(port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			io.WriteString(w, "ok\n")
			return
		}
		fmt.Fprintf(w, "%s\n", addr)
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	return func() { srv.Close() }, nil
}

// selfSigned returns a fresh self-signed certificate for name and its key, PEM.
func selfSigned(name string) ([]byte, []byte, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &k.PublicKey, k)
	if err != nil {
		return nil, nil, err
	}
	kd, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), nil
}
