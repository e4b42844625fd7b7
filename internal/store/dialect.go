package store

import (
	"database/sql"
	"strconv"
	"strings"
)

// The store speaks one SQL to two engines: SQLite (embedded, the
// default) and PostgreSQL. Statements are written for SQLite with ?
// placeholders; for PostgreSQL bind numbers the placeholders ($1, $2, ...)
// and rewrites the one column type that differs. Everything else the
// statements use (ON CONFLICT ... DO UPDATE/NOTHING, RETURNING, substr,
// CASE) means the same in both.

// bind rewrites q for the engine.
func bind(q string, pg bool) string {
	if !pg {
		return q
	}
	q = strings.ReplaceAll(q, "INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY")
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (t *Tx) exec(q string, args ...any) (sql.Result, error) {
	return t.tx.ExecContext(t.ctx, bind(q, t.pg), args...)
}

func (t *Tx) query(q string, args ...any) (*sql.Rows, error) {
	return t.tx.QueryContext(t.ctx, bind(q, t.pg), args...)
}

func (t *Tx) queryRow(q string, args ...any) *sql.Row {
	return t.tx.QueryRowContext(t.ctx, bind(q, t.pg), args...)
}
