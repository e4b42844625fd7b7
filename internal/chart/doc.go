// Package chart draws the results people would rather look at than read:
// ROC curves, feature time series with attack periods shaded, and
// measurements with their confidence intervals against a goal (Table 7's
// losses), as PNG or SVG (by file extension), with gonum/plot.
package chart
