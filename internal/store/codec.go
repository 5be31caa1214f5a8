package store

import (
	"encoding/json"
	"strconv"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// decodeNode decodes a stored node. Nodes are most of the state (a thousand per
// config), so the flat object json.Marshal writes for them is read by a fast path:
// integers and strings without escapes under the known keys. Anything else (an
// escape, an unknown key, a float) goes to encoding/json, which decides.
func decodeNode(b []byte, n *model.Node) error {
	if fastNode(b, n) {
		return nil
	}
	*n = model.Node{}
	return json.Unmarshal(b, n)
}

// fastNode decodes b into n when b is a flat object of the shape described above,
// and reports whether it did.
func fastNode(b []byte, n *model.Node) bool {
	*n = model.Node{}
	i := 0
	if len(b) < 2 || b[0] != '{' {
		return false
	}
	i++
	seen := 0
	for {
		if i < len(b) && b[i] == '}' && seen == 0 {
			return i == len(b)-1
		}
		key, j, ok := fastString(b, i)
		if !ok || j >= len(b) || b[j] != ':' {
			return false
		}
		i = j + 1
		switch key {
		case "id", "config_id", "nodebalancer_id", "weight":
			v, j, ok := fastInt(b, i)
			if !ok {
				return false
			}
			i = j
			switch key {
			case "id":
				n.ID = v
			case "config_id":
				n.ConfigID = v
			case "nodebalancer_id":
				n.NodeBalancerID = v
			default:
				n.Weight = v
			}
		case "label", "address", "mode":
			v, j, ok := fastString(b, i)
			if !ok {
				return false
			}
			i = j
			switch key {
			case "label":
				n.Label = v
			case "address":
				n.Address = v
			default:
				n.Mode = model.Mode(v)
			}
		default:
			return false
		}
		seen++
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case ',':
			i++
		case '}':
			return i == len(b)-1
		default:
			return false
		}
	}
}

// fastString reads a JSON string without escapes at b[i:], returning it and the index
// after its closing quote.
func fastString(b []byte, i int) (string, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return "", i, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return string(b[i+1 : j]), j + 1, true
		case c == '\\' || c < 0x20 || c >= 0x80:
			return "", i, false // escapes, control bytes and UTF-8: encoding/json's job
		}
	}
	return "", i, false
}

// fastInt reads a JSON integer at b[i:] that fits an int.
func fastInt(b []byte, i int) (int, int, bool) {
	j := i
	if j < len(b) && b[j] == '-' {
		j++
	}
	start := j
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		j++
	}
	if j == start || j-start > 18 || (b[start] == '0' && j-start > 1) {
		return 0, i, false
	}
	v, err := strconv.Atoi(string(b[i:j]))
	return v, j, err == nil
}
