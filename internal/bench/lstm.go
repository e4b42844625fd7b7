package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"sort"
	"time"

	"secaas/internal/lstm"
)

// LSTMOptions configure RunLSTM.
type LSTMOptions struct {
	Windows, Epochs, Seq int
	Progress             io.Writer
}

// LSTMResult is what bench lstm measured.
type LSTMResult struct {
	Windows, Epochs, Seq, Anomalies int
	Cores                           int
	Train                           time.Duration
	PerEpoch                        time.Duration
	InferOne                        time.Duration // one sequence, one window's verdict (median)
	InferBatched                    time.Duration // per window, scoring a whole series (ScoreSeries)
	ModelBytes                      int
	Params                          int
	ValAUC                          float64
}

// lstmSeries is a training series shaped like the paper's (Table 3: 21,600
// windows, 103 anomalous): the 11 features on a daily cycle with
// autocorrelated noise, and rare anomalous windows where SYN and packet
// counts jump.
func lstmSeries(n int, seed uint64) ([][]float64, []bool) {
	r := rand.New(rand.NewPCG(seed, 11))
	x := make([][]float64, n)
	y := make([]bool, n)
	var ar float64
	for i := range x {
		ar = 0.9*ar + 0.1*r.NormFloat64()
		load := (1 + 0.5*math.Sin(2*math.Pi*float64(i)/1440)) * math.Exp(ar)
		pps := 200 * load * (1 + 0.1*r.NormFloat64())
		ips := 40 * load * (1 + 0.1*r.NormFloat64())
		syn := 0.1 * pps * (1 + 0.2*r.NormFloat64())
		x[i] = []float64{1.2 + 0.1*r.NormFloat64(), 4 + 0.2*r.NormFloat64(), 1.5 + 0.1*r.NormFloat64(), syn / pps,
			pps * 600, pps, pps / ips, ips, syn / ips, pps * 600 / ips, syn}
		if r.IntN(210) == 0 {
			y[i] = true
			x[i][3], x[i][5], x[i][10] = 0.7, pps*5, pps*3.5
			x[i][0] += 1
		}
	}
	return x, y
}

// RunLSTM times LSTM-NAD's training and inference on this machine.
func RunLSTM(ctx context.Context, o LSTMOptions) (*LSTMResult, error) {
	if o.Windows <= 0 {
		o.Windows = 21600
	}
	if o.Epochs <= 0 {
		o.Epochs = 50
	}
	if o.Seq <= 0 {
		o.Seq = 10
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	x, y := lstmSeries(o.Windows, 1)
	res := &LSTMResult{Windows: o.Windows, Epochs: o.Epochs, Seq: o.Seq, Cores: runtime.GOMAXPROCS(0)}
	for _, a := range y {
		if a {
			res.Anomalies++
		}
	}
	fmt.Fprintf(o.Progress, "bench lstm: training the paper's LSTM-NAD on %d windows (%d anomalous), T=%d, %d epochs, %d cores\n",
		o.Windows, res.Anomalies, o.Seq, o.Epochs, res.Cores)
	cfg := lstm.TrainConfig{Kind: lstm.Classifier, Arch: lstm.Arch{Features: 11, Seq: o.Seq}, Epochs: o.Epochs, Seed: 1,
		Progress: func(e lstm.Epoch) {
			fmt.Fprintf(o.Progress, "bench lstm: epoch %d/%d loss %.4f val %.4f AUC %.3f, %s elapsed, about %s left\n",
				e.N, e.Of, e.Loss, e.ValLoss, e.ValAUC, e.Elapsed.Round(time.Second), e.Remains.Round(time.Second))
			res.ValAUC = e.ValAUC
		}}
	t0 := time.Now()
	m, err := lstm.Train(ctx, cfg, x, y)
	if err != nil {
		return nil, err
	}
	res.Train = time.Since(t0)
	res.PerEpoch = res.Train / time.Duration(o.Epochs)
	var b bytes.Buffer
	if err := m.Save(&b); err != nil {
		return nil, err
	}
	res.ModelBytes = b.Len()
	a := m.Arch
	res.Params = 4*a.LSTM1*(a.Features+a.LSTM1+1) + 4*a.LSTM2*(a.LSTM1+a.LSTM2+1) + a.Dense1*(a.LSTM2+1) + a.Dense2*(a.Dense1+1) + a.Out*(a.Dense2+1)
	// One window's verdict as the live detector computes it.
	sc := m.Scorer()
	var lat []time.Duration
	for i := 0; i < 5000; i++ {
		k := m.Need() + i%(len(x)-m.Need())
		t := time.Now()
		if _, err := sc.Score(x[k-m.Need() : k]); err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(t))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	res.InferOne = lat[len(lat)/2]
	n := min(5000, len(x))
	t0 = time.Now()
	if _, err := m.ScoreSeries(x[:n]); err != nil {
		return nil, err
	}
	res.InferBatched = time.Since(t0) / time.Duration(n-m.Need()+1)
	return res, nil
}

// WriteLSTM prints bench lstm's table.
func WriteLSTM(w io.Writer, r *LSTMResult) {
	fmt.Fprintf(w, "### LSTM-NAD in pure Go (secaas bench lstm)\n\n")
	fmt.Fprintf(w, "The paper's network (LSTM 64 -> LSTM 32 -> Dense 64 -> Dense 32 -> Dense 1, %d weights), T = %d windows of 11 features, batch 64, Adam, "+
		"on a synthetic series shaped like the paper's Table 3 (%d windows, %d anomalous), %d cores; training in float64, verdicts in float32.\n\n", r.Params, r.Seq, r.Windows, r.Anomalies, r.Cores)
	fmt.Fprintln(w, "| measure | secaas (this machine) | paper (Keras + TensorFlow, Tesla P40 GPU) | goal |")
	fmt.Fprintln(w, "|---|---|---|---|")
	fmt.Fprintf(w, "| training, %d windows x %d epochs | %s (%s per epoch) | not reported | <= 10 min |\n", r.Windows, r.Epochs, r.Train.Round(time.Second), r.PerEpoch.Round(time.Millisecond))
	fmt.Fprintf(w, "| inference, one window's verdict (live) | %.1f us | not reported | <= 50 us |\n", float64(r.InferOne.Nanoseconds())/1e3)
	fmt.Fprintf(w, "| inference per window, a whole capture (nad eval) | %.1f us | not reported | - |\n", float64(r.InferBatched.Nanoseconds())/1e3)
	fmt.Fprintf(w, "| model file | %d bytes | - | - |\n", r.ModelBytes)
	fmt.Fprintf(w, "\nHeld-out AUC of the last epoch on this synthetic series: %.3f (a sanity check, not a detection result).\n", r.ValAUC)
}
