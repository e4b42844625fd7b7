// Package nad wires network anomaly detection together, the same way
// everywhere (nad detect/eval/train, the traffic lab, bench nad and the
// node agent's live monitors): a packet source (package capture) -> decode
// -> one feature extractor per monitored server (package feature) ->
// every configured detector (package detect, by registered name). Monitor
// is one server's live pipeline; Run drives monitors from a capture;
// Windows and Judge serve detectors that fit on a training part before
// they judge (--train-first); Evaluate scores verdicts against labels
// (Table 5 grid, ROC AUC, episodes found, false alarms per hour, where a
// run of consecutive alarmed benign windows is one alarm). Labels are the
// traffic lab's JSON or a CSV start_unix,end_unix,kind (fuzzed).
package nad
