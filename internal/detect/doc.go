// Package detect holds the anomaly detectors that judge a server's feature
// windows (package feature). They are pure: a window's feature vector in,
// a verdict out, no I/O.
//
// # Stability (the 2018 paper, §III.A.2 b)
//
// The profile is built from the previous N windows (default 120). For each
// feature, outliers are removed from those N values with Grubbs' test
// (two-sided, significance Alpha = 0.05, repeated while an outlier is found,
// at most half the values removed). Then, as the paper prints them:
//
//	fb(x)  = sum(x_i) / (n + 1)             eq. 1, n = values kept (note the +1)
//	cv(x)  = sigma(x) / mu(x)               eq. 2
//	w(x)   = -ln(cv(x) / sum_F cv)          eq. 3
//	diff   = sum_F w(x) |fb(x)^2 - fc(x)^2| eq. 4, fc = the current window
//
// Degenerate cases: mu = 0 gives cv = 0; a feature with cv = 0 gets the
// weight of cv = 1e-3 * sum cv / |F| (large but finite); if every cv is 0,
// every weight is 1.
//
// The threshold follows the paper: the deviations of the N history windows
// (each against the profile) are split by Grubbs' test into normal values
// and outliers, and the threshold is the mean of the two means. With no
// outlier in the history it is mean + 3 sd of the normal deviations (the
// paper is silent on this case). Until N windows are seen there is no
// verdict. Each verdict names the features that contributed most.
//
// # Normalized (our variant)
//
// The 8 features and the 3 extra ones (package feature: new clients, RSTs
// from the server, most SYNs per client and port), scored so that no
// feature can dominate and no history can lock itself out of learning:
//
//   - Profile: per feature, the median m of the last N windows and a robust
//     spread s: 1.4826 MAD, else (when most values are equal) the 10-90 %
//     range / 2.563, and never below the feature's resolution
//     (Config.Resolution, from feature.StabilityResolution) or 5 % of |m|.
//     A constant history (portacc always 0, every TTL 64) thus has the
//     resolution as its spread, not 0.
//   - Term: z² with z = min(|x - m| / s, ZMax) per feature, equal weights;
//     the deviation is their sum (a diagonal Mahalanobis distance), so at
//     most ZMax² per feature, and one feature far off counts more than the
//     same distance spread thinly over noisy ones (a scan that moves only
//     the port entropy). The paper's cv weights gave a constant feature the
//     largest weight of all.
//   - Threshold: the median deviation of the history's windows that were
//     not alarmed, plus K (Config.K, DefaultK) times their robust spread, and
//     at least the sum of the weights (a perfectly regular history does not
//     alarm on any change at all).
//   - Learning: every window enters the history; an alarmed one enters
//     winsorized, each feature clipped to m ± ClipZ·s. Drift against
//     poisoning: an attack moves the median by at most ClipZ spreads, and
//     only once it fills half the history; a lasting change of normal
//     traffic is learned the same way, ClipZ spreads per N/2 windows or so
//     (a change of 15 spreads in about 2.5 N windows; sooner as the clipped
//     windows widen the spread), and it never locks itself out.
//
// # One registry
//
// Every detector is registered once by name (Register) with what it needs:
// stability and normalized learn as they observe; lstm (LSTM-NAD, package
// lstm) needs a trained classifier; lstm-unsup a forecaster, or it trains
// one on benign windows in Fit (eval's --train-first). The CLI, the lab,
// the benchmark and the node agent all make detectors with New, and judge
// whole windows through nad.Monitor or nad.Judge.
package detect
