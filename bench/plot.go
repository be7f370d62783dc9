package main

import (
	"fmt"
	"image/color"
	"maps"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// The plots of the recycling part, as SVG files in dir:
//
//	rss-memdrain.svg, rss-baseline.svg  every worker's RSS over time, the
//	                                    limit, and a mark at each recycle
//	throughput.svg                      completed requests per second, in
//	                                    100 ms buckets, for both
const (
	plotWidth  = 9 * vg.Inch
	plotHeight = 3.6 * vg.Inch
)

func writePlots(dir string, p *recyclePart) error {
	runs := []*recycleResult{&p.recycleResult}
	if p.Baseline != nil {
		runs = append(runs, p.Baseline)
	}
	for _, r := range runs {
		if err := plotRSS(filepath.Join(dir, "rss-"+r.Mode+".svg"), r); err != nil {
			return fmt.Errorf("plotting %s's memory: %w", r.Mode, err)
		}
	}
	if err := plotThroughput(filepath.Join(dir, "throughput.svg"), runs); err != nil {
		return fmt.Errorf("plotting throughput: %w", err)
	}
	return nil
}

// plotRSS draws one line per worker process, in its slot's colour.
func plotRSS(path string, r *recycleResult) error {
	s := r.series
	pl := plot.New()
	pl.Title.Text = fmt.Sprintf("%s: RSS of every worker (sampled every %v), limit, recycles", r.Mode, sampleEvery)
	pl.X.Label.Text = "seconds"
	pl.Y.Label.Text = "MiB"
	mib := func(b uint64) float64 { return float64(b) / (1 << 20) }

	byPid := map[int]plotter.XYs{}
	slotOf := map[int]int{}
	for _, smp := range s.samples {
		if smp.T.Before(s.start) || smp.RSS == 0 { // zero: the process was exiting
			continue
		}
		byPid[smp.Pid] = append(byPid[smp.Pid], plotter.XY{X: smp.T.Sub(s.start).Seconds(), Y: mib(smp.RSS)})
		slotOf[smp.Pid] = smp.Slot
	}
	legend := map[int]bool{}
	for _, pid := range slices.Sorted(maps.Keys(byPid)) {
		line, err := plotter.NewLine(byPid[pid])
		if err != nil {
			return err
		}
		slot := slotOf[pid]
		line.Color = plotutil.Color(slot)
		line.Width = vg.Points(1.2)
		pl.Add(line)
		if !legend[slot] {
			pl.Legend.Add(fmt.Sprintf("worker %d", slot), line)
			legend[slot] = true
		}
	}
	end := float64(len(s.buckets)) * bucketWidth.Seconds()
	limit, err := plotter.NewLine(plotter.XYs{{X: 0, Y: mib(s.limit)}, {X: end, Y: mib(s.limit)}})
	if err != nil {
		return err
	}
	limit.Color = color.RGBA{R: 200, A: 255}
	limit.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
	pl.Add(limit)
	pl.Legend.Add("limit", limit)
	if err := addRecycleMarks(pl, s, mib(s.limit)*1.04); err != nil {
		return err
	}
	pl.Y.Min = 0
	pl.Y.Max = mib(s.limit) * 1.12
	pl.Legend.Top = false
	pl.Legend.Left = true
	return pl.Save(plotWidth, plotHeight, path)
}

// addRecycleMarks puts a triangle at height y at the start of every
// recycle.
func addRecycleMarks(pl *plot.Plot, s series, y float64) error {
	if len(s.recycles) == 0 {
		return nil
	}
	var xys plotter.XYs
	for _, t := range s.recycles {
		xys = append(xys, plotter.XY{X: t.Sub(s.start).Seconds(), Y: y})
	}
	marks, err := plotter.NewScatter(xys)
	if err != nil {
		return err
	}
	marks.GlyphStyle = draw.GlyphStyle{Shape: draw.PyramidGlyph{}, Radius: vg.Points(3), Color: color.Black}
	pl.Add(marks)
	pl.Legend.Add("recycle", marks)
	return nil
}

// plotThroughput draws the completed requests per second of each run.
func plotThroughput(path string, runs []*recycleResult) error {
	pl := plot.New()
	pl.Title.Text = fmt.Sprintf("completed requests per second, in %v buckets", bucketWidth)
	pl.X.Label.Text = "seconds"
	pl.Y.Label.Text = "requests/s"
	perSecond := float64(1e9) / float64(bucketWidth)
	top := 1.0
	for _, r := range runs {
		for _, n := range r.series.buckets {
			top = max(top, float64(n)*perSecond)
		}
	}
	for i, r := range runs {
		var xys plotter.XYs
		for b, n := range r.series.buckets {
			xys = append(xys, plotter.XY{X: (float64(b) + 0.5) * bucketWidth.Seconds(), Y: float64(n) * perSecond})
		}
		if len(xys) == 0 {
			continue
		}
		line, err := plotter.NewLine(xys)
		if err != nil {
			return err
		}
		line.Color = plotutil.Color(i + 2)
		line.Width = vg.Points(1)
		pl.Add(line)
		pl.Legend.Add(r.Mode, line)
		// The recycles, as ticks under the line.
		var ticks plotter.XYs
		for _, t := range r.series.recycles {
			ticks = append(ticks, plotter.XY{X: t.Sub(r.series.start).Seconds(), Y: float64(i+1) * 0.04 * top})
		}
		if len(ticks) > 0 {
			marks, err := plotter.NewScatter(ticks)
			if err != nil {
				return err
			}
			marks.GlyphStyle = draw.GlyphStyle{Shape: draw.PyramidGlyph{}, Radius: vg.Points(3), Color: line.Color}
			pl.Add(marks)
			pl.Legend.Add(r.Mode+" recycle", marks)
		}
	}
	pl.Y.Min = 0
	pl.Y.Max = top * 1.1
	// Between the curves near the top and the recycle marks at the bottom.
	pl.Legend.Top = false
	pl.Legend.Left = true
	pl.Legend.YOffs = plotHeight / 4
	return pl.Save(plotWidth, plotHeight, path)
}
