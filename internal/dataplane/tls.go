package dataplane

import (
	"crypto/tls"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// recommendedSuites are the TLS 1.2 suites of cipher_suite "recommended": forward
// secret AEAD only. TLS 1.3 suites are not configurable in Go and are all modern.
var recommendedSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// legacySuites are added by cipher_suite "legacy" for old clients: CBC and non
// forward-secret suites, from TLS 1.0 up.
var legacySuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
	tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
	tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
	tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_RSA_WITH_AES_128_CBC_SHA,
	tls.TLS_RSA_WITH_AES_256_CBC_SHA,
}

// tlsConfig builds the server TLS settings of an https config.
func tlsConfig(c model.Config) (*tls.Config, error) {
	kp, err := model.KeyPair(c.SSLCert, c.SSLKey)
	if err != nil {
		return nil, err
	}
	t := &tls.Config{
		Certificates: []tls.Certificate{kp},
		MinVersion:   tls.VersionTLS12,
		CipherSuites: recommendedSuites,
		NextProtos:   []string{"h2", "http/1.1"},
	}
	if c.CipherSuite == model.CipherLegacy {
		t.MinVersion = tls.VersionTLS10
		t.CipherSuites = append(append([]uint16{}, recommendedSuites...), legacySuites...)
	}
	return t, nil
}
