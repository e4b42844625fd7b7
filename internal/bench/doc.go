// Package bench holds the benchmark commands (secaas bench ...): each runs
// an experiment on the real components, prints a table with the paper's
// figures beside ours, and can write it as Markdown for the README.
package bench
