// Package chart draws the results people would rather look at than read:
// ROC curves and feature time series with attack periods shaded, as PNG or
// SVG (by file extension), with gonum/plot.
package chart
