#!/bin/bash
# Regenerate the built-in voice prompts (firmware/media/prompts/<lang>/<name>.wav, 16-bit 8 kHz
# mono) with espeak-ng and sox (Debian packages espeak-ng, sox): silence trimmed at both ends
# (prompts are joined into announcements), 0.1 s of it put back at the end. The WAV files are
# committed; run this only after changing a text.
set -eu
out="$(dirname "$0")/../firmware/media/prompts"
tmp="$(mktemp --suffix=.wav)"
trap 'rm -f "$tmp"' EXIT
say() {  # language name text
    mkdir -p "$out/$1"
    espeak-ng -v "$1" -s 150 -w "$tmp" "$3"
    sox "$tmp" -r 8000 -c 1 -b 16 "$out/$1/$2.wav" \
        silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse pad 0 0.1 norm -3
}
say ru voicemail_greeting "Сейчас никто не может ответить. Оставьте сообщение после сигнала. Чтобы закончить, нажмите решётку или положите трубку."
say en voicemail_greeting "Nobody can take your call right now. Please leave a message after the tone. To finish, press hash or hang up."
say ru message_saved "Ваше сообщение сохранено. До свидания."
say en message_saved "Your message has been saved. Goodbye."
say ru callback_apology "Извините, мы не смогли перезвонить вам вовремя. Чтобы оставить сообщение, нажмите один."
say en callback_apology "We are sorry, we could not call you back in time. To leave a message, press one."
say ru voicemail_unavailable "Извините, сейчас мы не можем принять ваше сообщение. Пожалуйста, перезвоните позже."
say en voicemail_unavailable "Sorry, we cannot take your message right now. Please call again later."
say ru goodbye "До свидания."
say en goodbye "Goodbye."
say ru queue_position "Ваш номер в очереди:"
say en queue_position "Your position in the queue is"
say ru callback_offer "Чтобы мы перезвонили вам, сохранив вашу очередь, нажмите"
say en callback_offer "To be called back without losing your place, press"
say ru key_star "звёздочку"
say en key_star "star"
say ru key_hash "решётку"
say en key_hash "hash"
# Voice menus (firmware/routing/menu.py): a menu's greeting names these unless the office
# uploads its own recording.
say ru menu_welcome "Здравствуйте! Вы позвонили в нашу компанию."
say en menu_welcome "Hello, you have reached our company."
say ru menu_choose "Выберите нужный пункт, нажав клавишу на телефоне."
say en menu_choose "Please choose an option on your phone's keypad."
say ru menu_dial_extension "Если вы знаете добавочный номер, наберите его сейчас."
say en menu_dial_extension "If you know the extension number, dial it now."
say ru menu_invalid "Извините, такого пункта нет."
say en menu_invalid "Sorry, there is no such option."
say ru call_may_be_recorded "Разговор может быть записан."
say en call_may_be_recorded "This call may be recorded."
# A menu's greeting recorded by phone (*97 + the menu's number, firmware/ivr.py).
say ru greeting_record_options "Чтобы записать приветствие, нажмите один. Чтобы прослушать, нажмите два. Чтобы сохранить, нажмите три. Запись заканчивается решёткой."
say en greeting_record_options "To record the greeting, press one. To listen to it, press two. To save it, press three. Press hash to end a recording."
say ru greeting_saved "Приветствие сохранено."
say en greeting_saved "The greeting has been saved."
say ru greeting_not_saved "Извините, приветствие не удалось сохранить."
say en greeting_not_saved "Sorry, the greeting could not be saved."
say ru greeting_not_recorded "Приветствие ещё не записано."
say en greeting_not_recorded "Nothing has been recorded yet."
ru=(ноль один два три четыре пять шесть семь восемь девять десять одиннадцать двенадцать
    тринадцать четырнадцать пятнадцать шестнадцать семнадцать восемнадцать девятнадцать
    двадцать)
en=(zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen
    fifteen sixteen seventeen eighteen nineteen twenty)
for i in $(seq 0 20); do
    say ru "number_$i" "${ru[$i]}"
    say en "number_$i" "${en[$i]}"
done
