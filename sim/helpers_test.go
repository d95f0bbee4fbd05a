package sim

import "fmt"

func fmtSscanf(s string, v ...any) (int, error) {
	return fmt.Sscanf(s, "%d,%d,%d,%d,%d,%d", v...)
}
