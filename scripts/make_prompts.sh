#!/bin/sh
# Regenerate the built-in voice prompts (firmware/media/prompts/<lang>/<name>.wav, 16-bit 8 kHz
# mono) with espeak-ng and sox (Debian packages espeak-ng, sox). The WAV files are committed;
# run this only after changing a text.
set -eu
out="$(dirname "$0")/../firmware/media/prompts"
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
say() {  # language name text
    mkdir -p "$out/$1"
    espeak-ng -v "$1" -s 150 -w "$tmp" "$3"
    sox "$tmp" -r 8000 -c 1 -b 16 "$out/$1/$2.wav" norm -3
}
say ru voicemail_greeting "Сейчас никто не может ответить. Оставьте сообщение после сигнала. Чтобы закончить, нажмите решётку или положите трубку."
say en voicemail_greeting "Nobody can take your call right now. Please leave a message after the tone. To finish, press hash or hang up."
say ru message_saved "Ваше сообщение сохранено. До свидания."
say en message_saved "Your message has been saved. Goodbye."
say ru callback_apology "Извините, мы не смогли перезвонить вам вовремя. Чтобы оставить сообщение, нажмите один."
say en callback_apology "We are sorry, we could not call you back in time. To leave a message, press one."
say ru goodbye "До свидания."
say en goodbye "Goodbye."
