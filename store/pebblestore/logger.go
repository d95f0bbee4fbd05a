package pebblestore

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/cockroachdb/pebble/v2"
)

// slogLogger adapts an *slog.Logger to pebble.Logger.
type slogLogger struct {
	l *slog.Logger
	// fatal, when set, handles Fatalf instead of exiting: see Store.fatal.
	fatal func(msg string, args []any)
}

var _ pebble.Logger = slogLogger{}

func (s slogLogger) log(level slog.Level, format string, args []any) {
	if !s.l.Enabled(context.Background(), level) {
		return
	}
	s.l.Log(context.Background(), level, strings.TrimRight(fmt.Sprintf(format, args...), "\n"))
}

// Infof logs pebble's informational messages at debug level: they describe
// routine background work (flushes, compactions) a node operator rarely needs.
func (s slogLogger) Infof(format string, args ...any) { s.log(slog.LevelDebug, format, args) }

// Errorf logs at error level.
func (s slogLogger) Errorf(format string, args ...any) { s.log(slog.LevelError, format, args) }

// Fatalf is called by pebble when its state can no longer be trusted (a
// failed WAL write or sync, for instance) and it does not expect it to
// return. A Store handles it (Store.fatal: the store stops taking writes,
// and the process goes on serving reads); without one, Fatalf logs and
// exits the process, as pebble's own default logger does.
func (s slogLogger) Fatalf(format string, args ...any) {
	msg := strings.TrimRight(fmt.Sprintf(format, args...), "\n")
	if s.fatal != nil {
		s.fatal(msg, args)
	}
	s.l.Error("fatal storage error, exiting", "error", msg)
	os.Exit(1)
}
