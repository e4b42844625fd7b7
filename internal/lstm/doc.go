// Package lstm is LSTM-NAD's network (the 2020 paper, §3.2.2), trained and
// served in pure Go: LSTM layers with full backpropagation through time,
// dense layers (ReLU or linear), inverted dropout, sigmoid with binary
// cross-entropy or mean squared error, and Adam, in float64. Matrix
// products go through gonum's BLAS. The live verdict (Scorer: one
// sequence at a time) runs a float32 copy of the weights, both LSTM layers
// stepped together, with a rational tanh: about 47 us per verdict instead
// of 80, equal to the float64 network to about 1e-5 (tested).
//
// The paper's shape (PaperArch): <B, T, F> -> LSTM 64 (every step) ->
// LSTM 32 (last step) -> Dense 64 -> Dense 32 -> Dense 1, dropout after the
// two hidden dense layers. Two kinds of model share it:
//
//   - Classifier (the paper): the probability that the last window of a
//     sequence is anomalous, trained on labelled windows. Anomalous windows
//     are rare: the loss weighs each class as much as the other in sum (the
//     paper oversampled them to the same end).
//   - Forecaster (beyond the paper; detect feeds it the 11 features and
//     the 3 extra ones): trained on benign windows only, it
//     predicts window t from the T before it; the score is the mean squared
//     error of that forecast over the normalised features, and the threshold
//     is Margin (DefaultMargin) times the largest score on the held-out
//     benign windows.
//
// Training: features are normalised per feature as sign(x)·ln(1+|x|),
// standardised with the mean and deviation of the training part only
// (clipped at ±50 sd when scoring); the last Val of the series is held out;
// the weights of the epoch with the lowest held-out loss are kept. A batch
// is cut into a fixed number of shards computed in parallel and summed in
// order, so a seed gives the same model, byte for byte, on any number of
// cores.
//
// Model files (Model.Save, Load): magic "SECAASNN", a JSON header (version,
// kind, shape, feature names, window, normalisation, threshold), the weight
// tensors, and a CRC-32. Truncated, altered or mismatched files fail with
// an error wrapping ErrCorrupt; Load is fuzzed.
package lstm
