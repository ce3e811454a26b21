"""Text normalization: spell out what a speaker would say, keep case and punctuation.

Order matters: money, times, dates, percentages, ordinals, years and plain
numbers are spelled in that order, so that "$3.50" is not read as a decimal
and "1984" is a year but "1,984" a number. Numbers use num2words without
the commas it puts between groups. Output is ASCII with single spaces.
"""
from __future__ import annotations

import re
import unicodedata

from num2words import num2words

ABBREVIATIONS = {
    "mr": "mister", "mrs": "missus", "ms": "miss", "dr": "doctor", "st": "saint", "jr": "junior",
    "sr": "senior", "prof": "professor", "gen": "general", "capt": "captain", "lt": "lieutenant",
    "col": "colonel", "sgt": "sergeant", "rev": "reverend", "hon": "honorable", "gov": "governor",
    "co": "company", "corp": "corporation", "inc": "incorporated", "ltd": "limited", "dept": "department",
    "vs": "versus", "etc": "et cetera", "approx": "approximately", "ave": "avenue", "mt": "mount",
    "vol": "volume", "fig": "figure", "jan": "january", "feb": "february", "mar": "march",
    "apr": "april", "jun": "june", "jul": "july", "aug": "august", "sep": "september", "sept": "september",
    "oct": "october", "nov": "november", "dec": "december",
}
LATIN = {"e.g.": "for example", "i.e.": "that is", "a.m.": "a m", "p.m.": "p m"}
MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december"]
CURRENCIES = {"$": ("dollar", "dollars", "cent", "cents"), "£": ("pound", "pounds", "penny", "pence"),
              "€": ("euro", "euros", "cent", "cents")}
SCALES = r"(thousand|million|billion|trillion)"
UNICODE_PUNCT = {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": " - ",
                 "\u2026": "...", "\u00a0": " "}


def number_words(value: str) -> str:
    """'1,234' -> 'one thousand two hundred and thirty-four'; '3.14' -> 'three point one four'."""
    value = value.replace(",", "")
    words = num2words(float(value) if "." in value else int(value))
    return words.replace(",", "")


def _money(m: re.Match) -> str:
    one, many, sub_one, sub_many = CURRENCIES[m.group(1)]
    whole, frac, scale = m.group(2).replace(",", ""), m.group(3), m.group(4)
    if scale:  # $1.5 million -> one point five million dollars
        return f"{number_words(whole + ('.' + frac if frac else ''))} {scale} {many}"
    n = int(whole)
    out = f"{number_words(whole)} {one if n == 1 else many}"
    if frac and int(frac.ljust(2, "0")[:2]):
        cents = int(frac.ljust(2, "0")[:2])
        out += f" {number_words(str(cents))} {sub_one if cents == 1 else sub_many}"
    return out


def _time(m: re.Match) -> str:
    hour, minute, suffix = int(m.group(1)), int(m.group(2)), (m.group(3) or "").lower().replace(".", "")
    words = number_words(str(hour))
    if minute == 0:
        words += "" if suffix else " o'clock"
    elif minute < 10:
        words += " oh " + number_words(str(minute))
    else:
        words += " " + number_words(str(minute))
    return words + (" " + " ".join(suffix) if suffix else "")


def year_words(year: int) -> str:
    return num2words(year, to="year").replace(",", "")


def _date(m: re.Match) -> str:
    month, day, year = m.group(1), int(m.group(2)), m.group(3)
    out = f"{month} {num2words(day, to='ordinal')}"
    return out + (f", {year_words(int(year))}" if year else "")


def _numeric_date(m: re.Match) -> str:
    month, day, year = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return m.group(0)
    return f"{MONTHS[month - 1].capitalize()} {num2words(day, to='ordinal')}, {year_words(year)}"


def _abbreviation(m: re.Match) -> str:
    word = m.group(1)
    full = ABBREVIATIONS[word.lower()]
    return full.capitalize() if word[0].isupper() else full


def normalize_text(text: str) -> str:
    """Raw text -> spoken-form ASCII text with case and , . ; : ! ? ' - " kept."""
    for src, dst in UNICODE_PUNCT.items():
        text = text.replace(src, dst)
    for src, dst in LATIN.items():
        text = re.sub(re.escape(src), dst, text, flags=re.I)
    text = re.sub(r"\bNo\.\s?(?=\d)", "number ", text)
    text = re.sub(r"([$£€])\s?(\d[\d,]*)(?:\.(\d+))?(?:\s" + SCALES + r")?\b", _money, text)
    text = re.sub(r"\b(\d{1,2}):(\d{2})\s?([ap]\.?m\.?)?(?=\W|$)", _time, text, flags=re.I)
    text = re.sub(r"\b(\d{1,2})\s?([ap])\.?m\.?(?=\W|$)", lambda m: f"{number_words(m.group(1))} {m.group(2).lower()} m",
                  text, flags=re.I)
    text = re.sub(r"\b(\d{1,2})/(\d{1,2})/(\d{4})\b", _numeric_date, text)
    months = "|".join(m.capitalize() for m in MONTHS)
    text = re.sub(rf"\b({months})\s(\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s(\d{{4}})\b)?", _date, text)
    text = re.sub(r"(-?\d[\d,]*(?:\.\d+)?)\s?%", lambda m: number_words(m.group(1).lstrip("-")) + " percent"
                  if not m.group(1).startswith("-") else "minus " + number_words(m.group(1)[1:]) + " percent", text)
    text = re.sub(r"\b(\d+)(st|nd|rd|th)\b", lambda m: num2words(int(m.group(1)), to="ordinal"), text, flags=re.I)
    text = re.sub(r"\b(1[1-9]\d\d|20\d\d)s\b", lambda m: year_words(int(m.group(1))).replace("y", "ies")
                  if year_words(int(m.group(1))).endswith("ty") else year_words(int(m.group(1))) + "s", text)
    text = re.sub(r"(?<![\d,.])\b(1[1-9]\d\d|20\d\d)\b(?![\d,]|\.\d)", lambda m: year_words(int(m.group(1))), text)
    text = re.sub(r"(?<![\w.])-(\d)", r"minus \1", text)
    text = re.sub(r"\d[\d,]*(?:\.\d+)?", lambda m: " " + number_words(m.group(0).rstrip(",")) + " ", text)
    abbrevs = "|".join(sorted(ABBREVIATIONS, key=len, reverse=True))
    text = re.sub(rf"\b({abbrevs})\.", _abbreviation, text, flags=re.I)
    text = text.replace("&", " and ").replace("+", " plus ").replace("@", " at ").replace("#", " number ")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[\[\](){}<>]", ", ", text)
    text = re.sub(r"[^A-Za-z0-9,.;:!?'\"\- ]", " ", text)
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    text = re.sub(r"([,;:])(?:\s*[,;:])+", r"\1", text)
    return " ".join(text.split()).strip(" ,;:")
