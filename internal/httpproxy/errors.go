package httpproxy

import (
	"net/http"
	"strconv"
)

// cannedResponse is a prebuilt error response, in a keep-alive and a closing variant,
// so that answering an error allocates nothing.
type cannedResponse struct {
	keep, close []byte
}

var canned = func() map[int]*cannedResponse {
	m := make(map[int]*cannedResponse)
	for _, code := range []int{400, 408, 413, 417, 431, 500, 501, 502, 503, 504, 505} {
		body := strconv.Itoa(code) + " " + http.StatusText(code) + "\n"
		head := "HTTP/1.1 " + strconv.Itoa(code) + " " + http.StatusText(code) + "\r\n" +
			"Content-Type: text/plain; charset=utf-8\r\n" +
			"Cache-Control: no-store\r\n" +
			"Content-Length: " + strconv.Itoa(len(body)) + "\r\n"
		m[code] = &cannedResponse{
			keep:  []byte(head + "\r\n" + body),
			close: []byte(head + "Connection: close\r\n\r\n" + body),
		}
	}
	return m
}()

// errorResponse returns the bytes of the proxy's own response with status code.
func errorResponse(code int, keep bool) []byte {
	cr := canned[code]
	if cr == nil {
		cr = canned[500]
	}
	if keep {
		return cr.keep
	}
	return cr.close
}
