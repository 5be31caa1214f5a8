package stats

import (
	"errors"
	"net/url"
	"testing"

	"github.com/nodebalancer/nodebalancer/internal/model"
	"github.com/nodebalancer/nodebalancer/internal/store"
	"github.com/nodebalancer/nodebalancer/internal/teststore"
)

func TestPeriodParameterOfStats(t *testing.T) {
	db := teststore.New(t, statsPool)
	nb, _, _ := createNB(t, db, "web")
	reg := NewRegistry()
	c := &clock{utc("2025-03-10T12:00:03Z")}
	s := newTestStats(t, db, reg, c)
	reg.NodeBalancer(nb.ID).Connections.Add(20)
	s.sample(utc("2025-03-10T12:00:10Z"))

	tests := []struct {
		name, query string
		title       string // "" when an error is wanted
		field       string
	}{
		{"no period is Linode's day series", "", "nodebalancer - web (1) - day (5 min avg)", ""},
		{"day", "period=day", "nodebalancer - web (1) - day (5 min avg)", ""},
		{"hour", "period=hour", "nodebalancer - web (1) - hour (10 sec avg)", ""},
		{"bad period", "period=week", "", "period"},
		{"empty period", "period=", "", "period"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, _ := url.ParseQuery(tt.query)
			v, err := s.NodeBalancerStats(nb.ID, q)
			if tt.title == "" {
				var es model.Errors
				if !errors.As(err, &es) || len(es) != 1 || es[0].Field != tt.field {
					t.Fatalf("got %v %v, want an error on field %q", v, err, tt.field)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := v.(Response).Title; got != tt.title {
				t.Fatalf("title %q, want %q", got, tt.title)
			}
		})
	}
	v, err := s.NodeBalancerStats(nb.ID, url.Values{PeriodParam: {"hour"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := v.(Response).Data; len(got.Connections) != 1 || got.Connections[0][1] != 2 {
		t.Errorf("hour series %+v, want one point of 2 connections/s", got)
	}
	if _, err := s.NodeBalancerStats(nb.ID+100, nil); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown id: %v, want store.ErrNotFound", err)
	}
}
