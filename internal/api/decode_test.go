package api

import (
	"strings"
	"testing"

	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/testcert"
)

func TestDecodeConfigCreate(t *testing.T) {
	cert := testcert.New(t, "x.test")
	certPEM, keyPEM := cert.CertPEM, cert.KeyPEM
	tests := []struct {
		name, body string
		check      func(model.ConfigWithNodes) bool
		fields     []string
	}{
		{"empty body is all defaults", ``, func(c model.ConfigWithNodes) bool {
			d := model.NewConfig()
			return c.Config == d && len(c.Nodes) == 0
		}, nil},
		{"port omitted means default", `{"protocol":"tcp"}`, func(c model.ConfigWithNodes) bool { return c.Port == 80 }, nil},
		{"port null means default", `{"port":null}`, func(c model.ConfigWithNodes) bool { return c.Port == 80 }, nil},
		{"port 0 is refused", `{"port":0}`, nil, []string{"port"}},
		{"empty enum means default", `{"protocol":"","algorithm":""}`, func(c model.ConfigWithNodes) bool {
			return c.Protocol == "http" && c.Algorithm == "roundrobin"
		}, nil},
		{"null means not given", `{"check_path":null,"check_passive":null}`, func(c model.ConfigWithNodes) bool {
			return c.CheckPassive && c.CheckPath == ""
		}, nil},
		{"check_passive false", `{"check_passive":false}`, func(c model.ConfigWithNodes) bool { return !c.CheckPassive }, nil},
		{"https", `{"port":443,"protocol":"https","ssl_cert":` + jsonString(certPEM) + `,"ssl_key":` + jsonString(keyPEM) + `}`,
			func(c model.ConfigWithNodes) bool { return c.SSLCert == certPEM && c.SSLKey == keyPEM }, nil},
		{"nodes with defaults", `{"nodes":[{"address":"10.1.1.1:80","label":"n-1"},{"address":"[fd00::1]:80","label":"n-2","weight":3,"mode":"backup"}]}`,
			func(c model.ConfigWithNodes) bool {
				return len(c.Nodes) == 2 && c.Nodes[0].Weight == 50 && c.Nodes[0].Mode == "accept" && c.Nodes[1].Weight == 3 && c.Nodes[1].Mode == "backup"
			}, nil},
		{"udp_check_port default", `{"udp_session_timeout":null}`, func(c model.ConfigWithNodes) bool { return c.UDPCheckPort == 80 }, nil},
		{"udp_check_port given", `{"udp_check_port":1234,"udp_session_timeout":99}`, func(c model.ConfigWithNodes) bool { return c.UDPCheckPort == 1234 }, nil},
		{"read-only echoes", `{"id":9,"nodebalancer_id":9,"nodes_status":{"up":1},"ssl_commonname":"x","ssl_fingerprint":"y"}`,
			func(c model.ConfigWithNodes) bool { return c.ID == 0 && c.NodeBalancerID == 0 }, nil},
		{"type errors", `{"port":"80","check_passive":"yes","check_path":1,"nodes":{"a":1}}`, nil,
			[]string{"port", "check_path", "check_passive", "nodes"}},
		{"node errors", `{"nodes":[{"address":"10.1.1.1:80","label":"n-1","weight":0},{"address":"1.1.1.1:80","label":"n-2"}]}`, nil,
			[]string{"nodes[0].weight", "nodes[1].address"}},
		{"udp_check_port 0", `{"udp_check_port":0}`, nil, []string{"udp_check_port"}},
		{"udp_check_port too high", `{"udp_check_port":65536}`, nil, []string{"udp_check_port"}},
	}
	for _, tt := range tests {
		c, es := decodeConfigCreate([]byte(tt.body), testPolicy, nil)
		var fields []string
		for _, e := range es {
			fields = append(fields, e.Field)
		}
		if strings.Join(fields, ",") != strings.Join(tt.fields, ",") {
			t.Errorf("%s: errors %v, want fields %v", tt.name, es, tt.fields)
			continue
		}
		if tt.check != nil && !tt.check(c) {
			t.Errorf("%s: decoded %+v", tt.name, c)
		}
	}
}

// FuzzDecodeConfigCreate: no body makes the config decoder panic, and an accepted
// body always yields a config the model accepts.
func FuzzDecodeConfigCreate(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"port":443,"protocol":"https","ssl_cert":"<REDACTED>"}`,
		`{"nodes":[{"address":"10.1.1.1:80","label":"n-1","weight":7,"id":3}],"check":"http_body","check_body":"ok$"}`,
		`{"port":1e3}`, `{"nodes":[null,1,"x",{}]}`, `{"udp_check_port":[]}`, `[`, `{"a":{"b":[{"c":null}]}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		c, es := decodeConfigCreate(body, testPolicy, nil)
		if len(es) > 0 {
			return
		}
		if v := model.ValidateConfig(&c.Config); len(v) > 0 {
			t.Fatalf("accepted %q but the model refuses it: %v", body, v)
		}
		for _, n := range c.Nodes {
			if v := model.ValidateNode(&n, testPolicy); len(v) > 0 {
				t.Fatalf("accepted %q but the model refuses node %+v: %v", body, n, v)
			}
		}
	})
}

// FuzzDecodeRequests runs every body decoder on the same input: none may panic.
func FuzzDecodeRequests(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"label":"abc","configs":[{"nodes":[{"address":"10.0.0.1:80","label":"abc"}]}]}`,
		`{"nodes":[{"id":1}]}`, `{"tags":null,"vpcs":[{}]}`, `{"label":"\u0000"}`, `{"weight":-1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		decodeNodeBalancerCreate(body, testPolicy, nil)
		decodeNodeBalancerUpdate(body, nil)
		decodeConfigUpdate(body, nil)
		p, nodes, es := decodeRebuild(body, nil)
		if len(es) == 0 {
			c := model.NewConfig()
			p.apply(&c, false)
			for _, np := range nodes {
				n := model.NewNode()
				np.apply(&n)
			}
		}
		decodeNodeCreate(body, testPolicy, nil)
		decodeNodeUpdate(body, nil)
	})
}
