// Package api is the REST API of the control plane: JSON over HTTP with
// bearer tokens (the Bearer scheme is required), a thin layer over package
// controller. It decodes strictly (unknown fields, duplicate keys at any
// depth, trailing data and oversized bodies are errors), maps
// errors to statuses in one place (writeError), and serves its own OpenAPI
// document at /v1/openapi.json. A change waits (?wait=) for the hosts it
// goes to: 202 when one has not answered, 502 when one refused it (the
// change stays stored). Domain documents are served as kept per stored
// version.
package api
