package health_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodebalancer/nodebalancer/internal/health"
	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/testnet"
)

// A check type written outside the package with nothing but the exported API: it
// connects, reads the first line the node sends (an SMTP or FTP style banner) and
// passes when check_body matches it.
func init() {
	health.Register(health.CheckDef{
		CheckInfo: model.CheckInfo{Name: "test_banner", Label: "Banner", UsesBody: true,
			Protocols: []model.Protocol{model.ProtocolTCP}},
		Probe: probeBanner,
	})
}

func probeBanner(ctx context.Context, t health.Target) error {
	conn, err := t.Dialer.DialContext(ctx, "tcp", t.Addr.String())
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !t.Body.MatchString(line) {
		return errors.New("banner does not match check_body")
	}
	return nil
}

func TestRegisteredCheckTypeDecidesStatus(t *testing.T) {
	t.Parallel()
	if !health.Implements("test_banner") || health.Implements("test_nothing") {
		t.Fatal("Implements does not follow the registry")
	}
	c := model.NewConfig()
	c.Protocol, c.Check = model.ProtocolTCP, "test_banner"
	if es := model.ValidateConfig(&c); len(es) != 1 || es[0].Reason != "check_body is required when check is test_banner" {
		t.Fatalf("validation of the registered check without check_body: %v", es)
	}

	var banner atomic.Value
	banner.Store("220 ready\r\n")
	ln := testnet.ServeConns(t, "127.0.41.20:0", func(conn net.Conn) {
		defer conn.Close()
		conn.Write([]byte(banner.Load().(string)))
	})
	checker := health.New(health.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- checker.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	spec := health.Spec{Check: "test_banner", Body: `^220 `, Interval: 200 * time.Millisecond, Timeout: 100 * time.Millisecond, Attempts: 1}
	checker.Set(1, spec, []model.Node{{ID: 7, Address: ln.Addr().String(), Mode: model.ModeAccept, Weight: 1}})
	wait := func(want model.NodeStatus) {
		t.Helper()
		for end := time.Now().Add(5 * time.Second); checker.Status(7) != want; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("status %s, want %s", checker.Status(7), want)
			}
		}
	}
	wait(model.StatusUp)
	banner.Store("554 go away\r\n")
	wait(model.StatusDown)
	banner.Store("220 back\r\n")
	wait(model.StatusUp)
}

func TestEveryModelCheckIsImplemented(t *testing.T) {
	for _, c := range model.Checks() {
		if !health.Implements(c.Name) {
			t.Errorf("model accepts check %s but health cannot run it", c.Name)
		}
	}
}
