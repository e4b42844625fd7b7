package cli

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"gopkg.in/yaml.v3"
)

// Output formats of the read commands: one layer for all of them.
const (
	FormatTable = "table" // columns for people (the default)
	FormatWide  = "wide"  // more columns
	FormatJSON  = "json"  // the API's own document, indented
	FormatYAML  = "yaml"  // the same document as YAML
)

// formatFlag is -o/--output, checked when parsed.
type formatFlag struct {
	v     *string
	extra []string // formats beyond the four (csv for a feature table)
}

func (f formatFlag) String() string {
	if f.v == nil {
		return ""
	}
	return *f.v
}

// Type names the value in help.
func (f formatFlag) Type() string { return "format" }

func (f formatFlag) Set(s string) error {
	for _, ok := range append([]string{FormatTable, FormatWide, FormatJSON, FormatYAML}, f.extra...) {
		if s == ok {
			*f.v = s
			return nil
		}
	}
	return fmt.Errorf("output %q: want %s", s, strings.Join(append([]string{FormatTable, FormatWide, FormatJSON, FormatYAML}, f.extra...), ", "))
}

// addOutput declares -o and --output (default table; extra formats may be
// allowed) and returns the chosen format.
func addOutput(fs *flag.FlagSet, extra ...string) *string {
	v := FormatTable
	if len(extra) > 0 && extra[0] != "" {
		v = extra[0]
	}
	f := formatFlag{v: &v, extra: extra}
	usage := "output format: " + strings.Join(append([]string{FormatTable, FormatWide, FormatJSON, FormatYAML}, extra...), ", ")
	fs.Var(f, "o", usage)
	fs.Var(f, "output", usage)
	return &v
}

// table collects rows for a table or wide listing.
type table struct {
	wide bool
	rows [][]string
}

func (t *table) row(cols ...string) { t.rows = append(t.rows, cols) }

// render prints v as format: json and yaml print the document itself
// (yaml with the JSON field names), table and wide what fill puts in a
// table (its first row is the header).
func render(env *Env, format string, v any, fill func(t *table)) error {
	switch format {
	case FormatJSON:
		return printJSON(env.Stdout, v)
	case FormatYAML:
		return printYAML(env.Stdout, v)
	}
	t := &table{wide: format == FormatWide}
	fill(t)
	tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
	for _, r := range t.rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// printYAML prints v as YAML under its JSON field names.
func printYAML(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		return err
	}
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return err
	}
	return enc.Close()
}
