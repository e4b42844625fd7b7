#!/usr/bin/env bash
# NAD II evaluation: tune on one labelled capture, report on another.
#   scripts/nad-eval.sh TUNE_DIR REPORT_DIR OUT_DIR
# TUNE_DIR and REPORT_DIR hold capture.pcap and labels.json from
# `secaas lab traffic` (docs/nad-lstm.md says with which seeds). For each
# window (1 s and 10 s):
#   1. on TUNE: the normalized detector's K and the forecaster's margin are
#      swept; each is judged after a benign --train-first part;
#   2. on TUNE: LSTM-NAD (the classifier) is trained on the whole capture;
#   3. on REPORT: every detector, at the chosen K and margin, with the
#      classifier from step 2, judged after --train-first; ROC curves of
#      all detectors in OUT_DIR/W/roc.png, the JSON in OUT_DIR/W/eval.json.
# Needs bin/secaas (make) and jq (make deps).
set -euo pipefail
tune=$1 rep=$2 out=$3
S=${SECAAS:-bin/secaas}
TUNE_FIRST=${TUNE_FIRST:-10m} REP_FIRST=${REP_FIRST:-15m}
mkdir -p "$out"
summary() { # name auc judged fa/h found/episodes-by-kind
  jq -r '.[] | "| \(.name) | \(.auc*1000|round/1000) | \(.windows_judged) | \(.false_alarm_windows) | \(.false_alarms_per_hour*10|round/10) | \([.episodes[]|select(.judged)|select(.detected)]|length)/\([.episodes[]|select(.judged)]|length) | \([.episodes[]|select(.judged)]|group_by(.kind)|map("\(.[0].kind|sub("replay:";"")|sub("\\.pcap.*";"")): \(map(select(.detected))|length)/\(length)")|join(", ")) |"'
}
for W in ${WINDOWS:-1s 10s}; do
  H=120; [ "$W" = 10s ] && H=60
  mkdir -p "$out/$W"
  echo "## window $W (history $H)"
  echo
  echo "### tuning on $(basename "$tune"): normalized K, judged after $TUNE_FIRST"
  echo
  echo "| detector | AUC | windows judged | false alarm windows | false alarms / h | episodes found | by kind |"
  echo "|---|---|---|---|---|---|---|"
  for k in 4 6 8 12 16 24 32; do
    "$S" nad eval --pcap "$tune/capture.pcap" --labels "$tune/labels.json" --window $W --history $H --train-first $TUNE_FIRST \
      --detector normalized --k $k -o json | summary | sed "s/^| normalized /| normalized K=$k /"
  done
  echo
  echo "### tuning on $(basename "$tune"): forecaster margin, judged after $TUNE_FIRST"
  echo
  echo "| detector | AUC | windows judged | false alarm windows | false alarms / h | episodes found | by kind |"
  echo "|---|---|---|---|---|---|---|"
  for m in 1 1.5 2 3 4; do
    "$S" nad eval --pcap "$tune/capture.pcap" --labels "$tune/labels.json" --window $W --history $H --train-first $TUNE_FIRST \
      --detector lstm-unsup --forecast-margin $m -o json 2>/dev/null | summary | sed "s/^| lstm-unsup /| lstm-unsup margin=$m /"
  done
  echo
  "$S" nad train --pcap "$tune/capture.pcap" --labels "$tune/labels.json" --window $W --out "$out/$W/lstm.model" 2>"$out/$W/train.log" >/dev/null
  echo "LSTM-NAD trained on all of $(basename "$tune") at $W: $(tail -n 1 "$out/$W/train.log" | cut -c1-120)"
  echo
  K=${K:-8} M=${MARGIN:-2}
  echo "### report on $(basename "$rep"): judged after $REP_FIRST (normalized K=$K, forecaster margin $M, fitted on the first $REP_FIRST)"
  echo
  "$S" nad eval --pcap "$rep/capture.pcap" --labels "$rep/labels.json" --window $W --history $H --train-first $REP_FIRST \
    --detector stability,normalized,lstm,lstm-unsup --k $K --forecast-margin $M --model "$out/$W/lstm.model" \
    --plots "$out/$W" -o json 2>/dev/null > "$out/$W/eval.json"
  echo "| detector | AUC | windows judged | false alarm windows | false alarms / h | episodes found | by kind |"
  echo "|---|---|---|---|---|---|---|"
  summary < "$out/$W/eval.json"
  echo
done
