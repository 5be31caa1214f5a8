package model

import (
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// Redacted is shown in place of ssl_cert and ssl_key; a client that sends it back
// means "unchanged".
const Redacted = "<REDACTED>"

// ParseCertificate returns the first (leaf) certificate of a PEM chain.
func ParseCertificate(certPEM string) (*x509.Certificate, error) {
	rest := []byte(certPEM)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("ssl_cert must be a PEM encoded certificate")
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("ssl_cert is not a valid certificate: %v", err)
		}
		return c, nil
	}
}

// KeyPair parses a certificate chain and its private key and checks they match.
func KeyPair(certPEM, keyPEM string) (tls.Certificate, error) {
	if b, _ := pem.Decode([]byte(keyPEM)); b == nil || !strings.Contains(b.Type, "PRIVATE KEY") {
		return tls.Certificate{}, errors.New("ssl_key must be a PEM encoded private key")
	}
	kp, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		if strings.Contains(err.Error(), "does not match") {
			return tls.Certificate{}, errors.New("ssl_key does not match ssl_cert")
		}
		return tls.Certificate{}, fmt.Errorf("ssl_key is not a usable private key: %v", err)
	}
	return kp, nil
}

// CertInfo derives ssl_commonname and ssl_fingerprint (SHA-1, colon separated, as
// Linode shows it) from a certificate chain; both are empty when there is none.
func CertInfo(certPEM string) (commonName, fingerprint string) {
	if certPEM == "" {
		return "", ""
	}
	c, err := ParseCertificate(certPEM)
	if err != nil {
		return "", ""
	}
	commonName = c.Subject.CommonName
	if commonName == "" && len(c.DNSNames) > 0 {
		commonName = c.DNSNames[0]
	}
	sum := sha1.Sum(c.Raw)
	var sb strings.Builder
	for i, b := range sum {
		if i > 0 {
			sb.WriteByte(':')
		}
		fmt.Fprintf(&sb, "%02X", b)
	}
	return commonName, sb.String()
}
