package main

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"time"
)

// report is everything one invocation measured.
type report struct {
	Options   options     `json:"options"`
	Started   time.Time   `json:"started"`
	CPUs      int         `json:"cpus"`
	Detection []detection `json:"detection,omitempty"`
	Broadcast []broadcast `json:"broadcast,omitempty"`
	// DetectionSummary has one row per cluster size and system.
	DetectionSummary []detectionRow `json:"detection_summary,omitempty"`
}

// spread is the minimum, median and maximum of a few runs.
type spread struct {
	Min    time.Duration `json:"min_ns"`
	Median time.Duration `json:"median_ns"`
	Max    time.Duration `json:"max_ns"`
}

func spreadOf(ds []time.Duration) spread {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return spread{}
	}
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return spread{Min: s[0], Median: med, Max: s[len(s)-1]}
}

func (s spread) String() string {
	r := func(d time.Duration) string { return fmt.Sprintf("%.2f", d.Seconds()) }
	return fmt.Sprintf("%s / %s / %s", r(s.Min), r(s.Median), r(s.Max))
}

type detectionRow struct {
	N            int    `json:"n"`
	System       string `json:"system"`
	Runs         int    `json:"runs"`
	FirstSuspect spread `json:"first_suspect"`
	AllDead      spread `json:"all_dead"`
	OtherDeaths  int    `json:"other_deaths"`
	// RatioToMemberlist is this system's median all-dead time over
	// memberlist's, in the same invocation (hearsay rows only).
	RatioToMemberlist float64 `json:"median_all_dead_ratio_to_memberlist,omitempty"`
}

func (r *report) summarize() {
	r.CPUs = runtime.NumCPU()
	medians := map[int]time.Duration{}
	for _, n := range r.Options.Sizes {
		for _, sys := range r.Options.Systems {
			var first, all []time.Duration
			row := detectionRow{N: n, System: sys}
			for _, d := range r.Detection {
				if d.N == n && d.System == sys {
					first = append(first, d.FirstSuspect)
					all = append(all, d.AllDead)
					row.OtherDeaths += d.OtherDeaths
				}
			}
			if len(all) == 0 {
				continue
			}
			row.Runs = len(all)
			row.FirstSuspect, row.AllDead = spreadOf(first), spreadOf(all)
			if sys == "memberlist" {
				medians[n] = row.AllDead.Median
			}
			r.DetectionSummary = append(r.DetectionSummary, row)
		}
	}
	for i, row := range r.DetectionSummary {
		if m := medians[row.N]; row.System != "memberlist" && m > 0 {
			r.DetectionSummary[i].RatioToMemberlist = row.AllDead.Median.Seconds() / m.Seconds()
		}
	}
}

func (r *report) print(w io.Writer) {
	o := r.Options
	fmt.Fprintf(w, "hearsay vs memberlist v0.7.0, profile %s, loopback, one process, %d CPUs, %s\n",
		o.Profile, r.CPUs, r.Started.Format(time.RFC3339))
	if len(r.DetectionSummary) > 0 {
		fmt.Fprintf(w, "\nFailure detection: one node stopped abruptly, seconds min / median / max over %d runs\n\n", o.Runs)
		fmt.Fprintln(w, "| N | system | first suspicion | dead at every other node | median vs memberlist | false deaths |")
		fmt.Fprintln(w, "| ---: | --- | ---: | ---: | ---: | ---: |")
		for _, row := range r.DetectionSummary {
			ratio := "-"
			if row.RatioToMemberlist > 0 {
				ratio = fmt.Sprintf("%.2f×", row.RatioToMemberlist)
			}
			fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %d |\n", row.N, row.System, row.FirstSuspect, row.AllDead, ratio, row.OtherDeaths)
		}
	}
	if len(r.Broadcast) > 0 {
		fmt.Fprintf(w, "\nBroadcast: %d nodes, updates from node 0 every %v, deadline %v after the last\n\n", o.BroadcastNodes, o.Interval, o.Deadline)
		fmt.Fprintln(w, "| value | system | run | updates | delivered | complete | p50 | p99 | max | wire B / payload B | idle cluster B/s |")
		fmt.Fprintln(w, "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
		var notes []string
		for _, b := range r.Broadcast {
			if b.Unsendable != "" {
				fmt.Fprintf(w, "| %s | %s | %d | %d | cannot send | - | - | - | - | - | - |\n", size(b.Value), b.System, b.Run+1, b.Updates)
				note := fmt.Sprintf("%s, %s: %s", b.System, size(b.Value), b.Unsendable)
				if !slices.Contains(notes, note) {
					notes = append(notes, note)
				}
				continue
			}
			fmt.Fprintf(w, "| %s | %s | %d | %d | %.1f%% | %d | %v | %v | %v | %.2f | %.0f |\n", size(b.Value), b.System, b.Run+1, b.Updates,
				100*b.Completeness, b.Complete, ms(b.P50), ms(b.P99), ms(b.Max), b.PerPayloadByte, b.IdleBytesPerSecond)
		}
		if len(notes) > 0 {
			fmt.Fprintf(w, "\n%s\n", strings.Join(notes, "\n"))
		}
	}
}

func size(b int) string {
	switch {
	case b >= 1<<20 && b%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", b>>20)
	case b >= 1<<10 && b%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", b>>10)
	}
	return fmt.Sprintf("%d B", b)
}
