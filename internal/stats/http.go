package stats

import (
	"net/url"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// PeriodParam is the query parameter of GET /v4/nodebalancers/{id}/stats that picks
// the series: "day" (the default, Linode's) or "hour".
const PeriodParam = "period"

// NodeBalancerStats answers GET /v4/nodebalancers/{id}/stats (api.StatsSource): the
// series of NodeBalancer id over the period the query asks for.
func (s *Stats) NodeBalancerStats(id int, query url.Values) (any, error) {
	p := PeriodDay
	if query.Has(PeriodParam) {
		p = Period(query.Get(PeriodParam))
	}
	if p != PeriodDay && p != PeriodHour {
		return nil, model.Errors{{Field: PeriodParam, Reason: `period must be "day" or "hour"`}}
	}
	nb, err := s.o.DB.NodeBalancer(id)
	if err != nil {
		return nil, err
	}
	return s.Series(id, nb.Label, p), nil
}
