package web

import (
	"encoding/json"

	"github.com/nodebalancer/nodebalancer/internal/model"
)

// choicesPath is the module the console imports its registry-driven choices from.
const choicesPath = "/js/choices.js"

// checkChoice is a check type as the console offers it: which of the check fields
// it uses decides which the form shows.
type checkChoice struct {
	model.Option
	UsesPath bool `json:"uses_path,omitempty"`
	UsesBody bool `json:"uses_body,omitempty"`
}

// choicesModule returns the ES module the console imports its algorithms, check
// types and stickiness kinds from, made from model's registry when the handler is
// built (after every init function has registered its own): an algorithm or check
// type registered by its file shows up in the console's dropdowns with no edit to
// the console, and without a build step.
func choicesModule() []byte {
	var checks []checkChoice
	for _, c := range model.Checks() {
		checks = append(checks, checkChoice{
			Option:   model.Option{Value: string(c.Name), Label: c.Label, Protocols: c.Protocols},
			UsesPath: c.UsesPath, UsesBody: c.UsesBody,
		})
	}
	b, err := json.Marshal(map[string]any{
		"algorithm":  model.AlgorithmOptions(),
		"stickiness": model.StickinessOptions(),
		"check":      checks,
	})
	if err != nil {
		panic(err) // plain strings and booleans
	}
	out := []byte("// Made by the server from its registry (web/choices.go); not a file on disk.\nexport default ")
	out = append(out, b...)
	return append(out, ";\n"...)
}
