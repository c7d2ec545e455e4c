#!/bin/bash
# Regenerate the built-in music on hold (firmware/media/prompts/en/hold_music.wav, 16-bit 8 kHz
# mono, about 20 s, looped by the box; every language falls back to it) with sox alone: a
# plucked arpeggio over C - Am - F - G - C - Am - Dm - G - C - C, each chord 2 s, with a little
# reverb. Made here from nothing, so it is free of anyone's rights. The WAV file is committed;
# run this only to change the tune. An office uploads its own music in the web UI.
set -eu
out="$(dirname "$0")/../firmware/media/prompts/en/hold_music.wav"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# Notes (Hz) of each chord's arpeggio: root, third, fifth, octave.
chords=(
    "261.63 329.63 392.00 523.25"  # C
    "220.00 261.63 329.63 440.00"  # Am
    "174.61 220.00 261.63 349.23"  # F
    "196.00 246.94 293.66 392.00"  # G
    "261.63 329.63 392.00 523.25"  # C
    "220.00 261.63 329.63 440.00"  # Am
    "146.83 174.61 220.00 293.66"  # Dm
    "196.00 246.94 293.66 392.00"  # G
    "261.63 329.63 392.00 523.25"  # C
    "261.63 392.00 329.63 261.63"  # C, falling back to the start
)
n=0
for chord in "${chords[@]}"; do
    for note in $chord; do
        n=$((n + 1))
        sox -n -r 8000 -c 1 -b 16 "$tmp/$(printf %03d $n).wav" \
            synth 0.5 pluck "$note" vol 0.6 fade q 0.005 0.5 0.08
    done
done
sox "$tmp"/[0-9]*.wav -r 8000 -c 1 -b 16 "$tmp/tune.wav"
sox "$tmp/tune.wav" -r 8000 -c 1 -b 16 "$out" reverb 30 50 60 trim 0 20 norm -6
