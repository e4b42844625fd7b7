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
// The same profile; the threshold is mean + K sd (Config.K, DefaultK = 8)
// of the history's normal deviations (after Grubbs), not the paper's halfway point, which sits too
// low for this score's heavy tail, and at least the sum of the weights (so
// a perfectly regular history does not alarm on any change at all). Each feature's term is scale-free:
// w(x) |fc(x) - m(x)| / (sd(x) + 0.01 |m(x)| + 1e-9), with m the mean of the
// kept history values, so a feature measured in thousands (bps) cannot drown
// one measured in fractions (syn), and eq. 1's n+1 bias disappears.
package detect
