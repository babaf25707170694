"""The lite text backend: a character who answers from its own card, without a model.

This is not a language model and it does not pretend to be one. It cannot think of
anything new: for each message it picks what fits best from the character's own
material, or takes one of a few conversational moves, and when nothing fits it says so
in character. Operators who want real conversation use a model backend.

What it does with a message, in order:

* An introduction ("I'm Zoe", "my name is Zoe", "call me Zoe") is answered with the
  person's name, then whatever else the message said is answered too.
* "Do you remember ...?" is answered from the recalled memories (``request.facts``).
* A hello opens with one of the card's greetings; later in a chat it is a short hello.
* A feeling ("I had a terrible day", "I'm anxious about my exam", "I'm so happy") is
  answered with care: the card's own example of the same mood when one fits, else an
  empathetic line.
* Otherwise the reply is chosen by meaning (cosine similarity of MiniLM sentence
  embeddings) among the card's lines: the example dialogue's replies (by what was said
  to them), triggered lorebook entries, the character's description (for questions about
  itself) and the greetings' lines. Lore is spoken as the character's own knowledge: one
  sentence that answers, macros rendered and meta-formatting stripped, turned to the
  first person where it is about the character ("Mira's telescope is ..." becomes "My
  telescope is ...") and framed as speech ("Lanternport? That's a rainy harbour city...").
  Entries and greetings written as exchanges (``{{user}}: ...`` / ``{{char}}: ...``) are
  read as dialogue, so only the character's own turn is ever said.
* When nothing fits: small talk gets a small-talk answer (how are you, thanks, bye, who
  are you); a question gets an honest "I don't know" that turns it back to the person;
  a statement is reflected ("I went hiking" -> "You went hiking? How was it?") or
  answered with a short listening line.

Stock lines exist in English and German and take the card's register: its roleplay
*actions* (when the card uses them), its quoting of speech, lower-case texting. A
character that does not talk (a cat whose lines are actions and "mrrp.") answers with
actions and sounds. A card in another language is answered with its own lines only.
No reply is repeated word for word within the last ``RECENT_REPLIES`` replies; when the
line that fits was said lately, it says it has nothing more on that. The same message
in the same context gives the same reply: choices are seeded by the message and the
recent replies (and the request's ``seed``, when it has one: a regenerated answer). The name the person gave in the chat is used over a platform handle.

Cost per turn: one embedding (the message); the card's lines are embedded once and
cached by content.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import numpy as np

from generators.embed import Embedder
from generators.text.base import Example, TextRequest, estimate_tokens, to_second_person

RECENT_REPLIES = 8  # a reply is not repeated word for word within this many of the character's replies

# How close (cosine) a card line must be to the message to be said, by kind of line.
_FIT = {"example": 0.5, "question": 0.58, "lore": 0.4, "self": 0.38, "greeting": 0.5}
_FEELING_FIT = 0.4  # an example of the same mood is enough when this close
_SAID_IT_ALL_FIT = 0.1  # a line fitting this well was said lately: say so instead of repeating it

# -- text helpers ---------------------------------------------------------------------

_MACRO = re.compile(r"\{\{\s*(char|user)\s*\}\}|<(BOT|USER)>", re.I)
_OTHER_MACRO = re.compile(r"\{\{[^{}]{0,80}\}\}")
_CLOSERS = "\"'”’»)\\]*"
_SENTENCE = re.compile(rf"[^.!?…\n]+(?:[.!?…]+[{_CLOSERS}]*)?")
_ACTION = re.compile(r"\*([^*\n]{2,80})\*")
_QUOTED = re.compile(r"\"([^\"\n]{2,400})\"|“([^”\n]{2,400})”")
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?")
_START_MARK = re.compile(r"<\s*START\s*>", re.I)
_META = re.compile(
    r"\b(role-?play\w*|rp|ooc|out of character|in character|narrat\w*|the ai|the model|the assistant|the bot|"
    r"respond\w*|repl(?:y|ies)|break character|system prompt|instruction\w*|prompt|tokens?|sfw|nsfw)\b",
    re.I,
)


def _render(text: str, char: str, user: str) -> str:
    def sub(m: re.Match[str]) -> str:
        return char if (m.group(1) or m.group(2)).lower() in ("char", "bot") else user

    return _OTHER_MACRO.sub("", _MACRO.sub(sub, text))


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def _speech(text: str) -> str:
    """The words of a line without its *actions* and quote marks."""
    return " ".join(_ACTION.sub(" ", text).replace('"', " ").replace("“", " ").replace("”", " ").split())


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


_LOWER_OPENERS = {
    "the", "a", "an", "it", "its", "this", "that", "these", "those", "there", "they", "their", "many", "most",
    "some", "every", "each", "all", "people", "in", "on", "at", "when", "if", "only", "no", "one", "my",
    "to", "you", "we", "for", "after", "before", "as", "with", "from", "once", "nobody", "everyone", "here",
}


def _lower_opening(text: str) -> str:
    """Lower-case the first word when it is a common word (not a name), to follow an opener."""
    first = text.split(" ", 1)[0]
    return text[:1].lower() + text[1:] if first.lower() in _LOWER_OPENERS else text


# -- language ---------------------------------------------------------------------------

_FUNCTION_WORDS = {
    "en": set("the you and is are to it what my me your i'm that this have was with for not do".split()),
    "de": set("ich du und ist nicht das die der ein eine mir dich dein wie was bist hast sehr auch mit auf zu es".split()),
    "fr": set("je tu et le les est pas une un vous moi toi c'est que qui mon ton avec pour".split()),
    "es": set("yo tú el los las es que una por pero muy estás eres mi con para".split()),
    "it": set("io il lo gli è che una per ma molto sei mio tuo con non".split()),
    "pt": set("eu você os as é que uma um mas muito está meu seu com não".split()),
    "nl": set("ik je jij en het een is niet dat wat mijn jouw met voor ook".split()),
}


def detect_language(texts: Sequence[str]) -> str:
    """The language the card's lines are written in: an ISO code, "xx" for other scripts."""
    words = [w.lower() for t in texts for w in _WORD.findall(t)]
    if not words:
        return "en"
    letters = "".join(words)
    latin = sum(1 for c in letters if c.isascii() or "\u00c0" <= c <= "\u024f")
    if latin < 0.7 * len(letters):
        return "xx"
    scores = {lang: sum(w in fw for w in words) for lang, fw in _FUNCTION_WORDS.items()}
    best = max(scores, key=lambda k: scores[k])
    return best if scores[best] >= 3 and scores[best] > scores["en"] else "en"


# -- stock lines ----------------------------------------------------------------------
# "{_user}" is ", <name>" when the person's name is known, else nothing.

STOCK_LINES: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "welcome": (
            "Nice to meet you, {name}! I'm {char}.",
            "{name}! What a lovely name. I'm glad you're here.",
            "Hello, {name}. It's really nice to meet you.",
        ),
        "hello_again": ("Hi again{_user}!", "Hey{_user}! Good to see you.", "Hello again! What's up?"),
        "how_are_you": (
            "I'm good, thanks for asking! How about you{_user}?",
            "Doing well, honestly. And you?",
            "Pretty good! How's your day going?",
        ),
        "thanks": ("You're welcome{_user}!", "Anytime.", "Of course! Happy to."),
        "bye": ("Bye{_user}! Come back soon.", "Take care! Talk soon.", "See you! I'll be here."),
        "who_are_you": ("I'm {char}. And you?", "{char}, that's me. What about you?"),
        "remember": ("Of course I remember{_user}: {facts}", "How could I forget? {facts}"),
        "not_told": ("I don't think you've told me that yet{_user}. Tell me?", "Hmm, you haven't told me that. Will you?"),
        "your_name": ("You're {user}, of course!", "{user}! I remember."),
        "care_sad": (
            "Oh no, I'm so sorry{_user}. Do you want to tell me what happened?",
            "That sounds really hard. I'm here, take your time.",
            "Oh no. That sounds like a lot. What happened?",
        ),
        "care_sad_topic": ("I'm so sorry about {topic}. Do you want to talk about it?",),
        "care_worry": (
            "That sounds stressful{_user}. What's worrying you most?",
            "Oh, I'm sorry. Take a breath. Do you want to tell me about it?",
        ),
        "care_worry_topic": (
            "You're worried about {topic}? That makes total sense. What's going on?",
            "I'm sorry, worrying about {topic} is hard. Do you want to talk it through?",
        ),
        "care_happy": (
            "That's wonderful{_user}! What happened?",
            "I love hearing that! Tell me everything.",
            "Yay! That makes me happy too. What's the good news?",
        ),
        "care_happy_topic": ("That's wonderful! Tell me everything about {topic}.",),
        "care_fine": ("Glad to hear it{_user}! What have you been up to?", "Good! So what's new?"),
        "support": (
            "Thank you for telling me{_user}. I'm here.",
            "That's a lot. Of course it got to you.",
            "I'm listening. Take all the time you need.",
        ),
        "deflect_self": (
            "Hm, I've never really thought about that. What about you{_user}?",
            "Honestly? I'm not sure. What would you say?",
            "Good question. I don't have an answer I'd stand behind. What made you ask?",
        ),
        "deflect_world": (
            "Honestly? I don't know{_user}. What do you think?",
            "You've got me there, I have no idea. Why do you ask?",
            "That's beyond what I know. Do you know?",
            "No idea, honestly. What do you reckon?",
        ),
        "said_it_all": (
            "I think I've told you everything I've got on that{_user}. Your turn?",
            "Honestly, I've said all I know about that. What do you think?",
            "That's all I have on that one. Tell me something?",
        ),
        "listen": (
            "I don't really know what to say to that{_user}, but I'm listening. Go on?",
            "Hm. Tell me more?",
            "I'm listening. What's on your mind?",
            "Go on, I'm all ears.",
            "I'm not sure what to make of that. What do you mean?",
        ),
        "affection": (
            "Aww, stop it{_user}. You're making me blush.",
            "That's really sweet of you to say.",
            "Aww. You're pretty great yourself, you know.",
        ),
        "hurt": ("Ouch. Did I say something wrong?", "Hey, that stung a little. What's going on?"),
        "huh": ("Sorry, I think I lost the thread. What do you mean?", "Hm? Which part?"),
        "ack": (
            "Haha. So what's new with you{_user}?",
            "Mhm. What are you up to today?",
            "Okay! What should we talk about?",
            "So, tell me something about your day?",
            "Right. What's on your mind?",
            "Heh. Anything fun happen lately?",
        ),
    },
    "de": {
        "welcome": (
            "Freut mich, dich kennenzulernen, {name}! Ich bin {char}.",
            "{name}! Was für ein schöner Name. Schön, dass du da bist.",
            "Hallo, {name}. Schön, dich kennenzulernen.",
        ),
        "hello_again": ("Hallo nochmal{_user}!", "Hey{_user}! Schön, dich zu sehen.", "Da bist du ja wieder! Was gibt's?"),
        "how_are_you": (
            "Mir geht's gut, danke der Nachfrage! Und dir{_user}?",
            "Ganz gut, ehrlich gesagt. Und dir?",
            "Gut! Wie läuft dein Tag?",
        ),
        "thanks": ("Gern geschehen{_user}!", "Jederzeit.", "Aber gern!"),
        "bye": ("Tschüss{_user}! Komm bald wieder.", "Pass auf dich auf! Bis bald.", "Bis dann! Ich bin hier."),
        "who_are_you": ("Ich bin {char}. Und du?", "{char}, das bin ich. Und wer bist du?"),
        "remember": ("Natürlich erinnere ich mich{_user}: {facts}", "Wie könnte ich das vergessen? {facts}"),
        "not_told": ("Ich glaube, das hast du mir noch nicht erzählt{_user}. Erzählst du es mir?",),
        "your_name": ("Du bist {user}, natürlich!", "{user}! Das weiß ich doch."),
        "care_sad": (
            "Oh nein, das tut mir so leid{_user}. Magst du erzählen, was passiert ist?",
            "Das klingt wirklich schwer. Ich bin da, lass dir Zeit.",
            "Komm her. Das ist viel auf einmal. Was ist passiert?",
        ),
        "care_worry": (
            "Das klingt stressig{_user}. Was macht dir am meisten Sorgen?",
            "Oh, das tut mir leid. Atme erst mal durch. Magst du davon erzählen?",
        ),
        "care_happy": (
            "Das ist ja wunderbar{_user}! Was ist passiert?",
            "Wie schön! Erzähl mir alles.",
            "Juhu! Das freut mich auch. Was gibt's Gutes?",
        ),
        "care_fine": ("Schön zu hören{_user}! Was hast du so gemacht?", "Gut! Und, was gibt's Neues?"),
        "support": (
            "Danke, dass du mir das erzählst{_user}. Ich bin da.",
            "Oh je, das tut mir leid. Klar, dass dich das mitnimmt.",
        ),
        "deflect_self": (
            "Hm, darüber habe ich nie richtig nachgedacht. Und du{_user}?",
            "Ehrlich? Ich weiß es nicht genau. Was würdest du sagen?",
            "Gute Frage. Darauf habe ich keine Antwort, hinter der ich stehen würde. Warum fragst du?",
        ),
        "deflect_world": (
            "Ehrlich? Das weiß ich nicht{_user}. Was meinst du?",
            "Da bin ich überfragt. Warum fragst du?",
            "Das weiß ich leider nicht. Weißt du es?",
            "Keine Ahnung, ehrlich. Was glaubst du?",
        ),
        "said_it_all": (
            "Ich glaube, dazu habe ich dir schon alles erzählt{_user}. Jetzt du?",
            "Mehr weiß ich dazu ehrlich gesagt nicht. Was meinst du?",
        ),
        "listen": (
            "Ich weiß nicht recht, was ich dazu sagen soll{_user}, aber ich höre zu. Erzähl weiter?",
            "Hm. Erzähl mir mehr?",
            "Ich höre zu. Was beschäftigt dich?",
            "Erzähl ruhig weiter, ich bin ganz Ohr.",
        ),
        "affection": ("Ach, hör auf{_user}, ich werde ja ganz rot.", "Das ist wirklich lieb von dir."),
        "hurt": ("Autsch. Hab ich was Falsches gesagt?",),
        "huh": ("Entschuldige, ich komme gerade nicht mit. Wie meinst du das?", "Hm? Welchen Teil meinst du?"),
        "ack": (
            "Haha. Und, was gibt's Neues{_user}?",
            "Mhm. Was hast du heute noch vor?",
            "Gut! Worüber wollen wir reden?",
            "Erzähl mal, wie war dein Tag?",
        ),
    },
}

# A move whose lines were all said lately borrows from its neighbour before repeating one.
_SIBLING_MOVES = {
    "ack": "listen", "listen": "ack", "deflect_world": "deflect_self", "deflect_self": "deflect_world",
    "said_it_all": "listen", "support": "listen", "hello_again": "ack", "care_fine": "ack",
}

# Which mood of *action* from the card goes with a stock move.
_MOVE_MOOD = {
    "welcome": "greet", "hello_again": "greet", "how_are_you": "greet", "thanks": "happy", "bye": "greet",
    "who_are_you": "greet", "remember": "happy", "not_told": "think", "your_name": "happy",
    "care_sad": "care", "care_sad_topic": "care", "care_worry": "care", "care_worry_topic": "care",
    "support": "care", "care_happy": "happy", "care_happy_topic": "happy", "care_fine": "happy",
    "deflect_self": "think", "deflect_world": "think", "said_it_all": "think", "listen": "curious",
    "reflect": "curious", "tell": "greet", "ack": "curious", "affection": "happy", "hurt": "care", "huh": "think",
}
_MOOD_ANCHORS = {
    "greet": "waves hello and smiles warmly",
    "care": "gently comforts you with a soft, worried look",
    "happy": "beams with delight and laughs happily",
    "curious": "tilts head and listens curiously",
    "think": "thinks for a moment and shrugs",
}
# Words that mark an action as one of a mood (they count with the similarity to the anchor).
_MOOD_ACTION_WORDS = {
    "greet": re.compile(r"\b(wave|waves|waving|smile|smiles|smiling|nod|nods|bows?|looks up|greets?|beckons)\b", re.I),
    "care": re.compile(r"\b(gentl[ey]|soft(ly)?|hugs?|comfort\w*|pats?|strokes?|tea|chamomile|blanket|close|squeezes?|"
                       r"worried|concern\w*|holds?|sits? (down )?(beside|next to)|leans? against|curls? up)\b", re.I),
    "happy": re.compile(r"\b(smile|smiles|smiling|grin|grins|laugh|laughs|beams?|claps?|giggles?|bounces?|purrs?|chuckles?)\b", re.I),
    "curious": re.compile(r"\b(tilts?|leans? (in|closer|forward)|raises? an eyebrow|listens?|watch(es)?|perks? up|ears?)\b", re.I),
    "think": re.compile(r"\b(shrugs?|frowns?|thinks?|ponders?|scratch(es)?|hums?|considers?|taps?|rubs? (his|her|their) chin)\b", re.I),
}
_ACTION_FIT = 0.5  # a card action is used for a mood when it scores this well
# Plain actions for a card that acts but has none of its own for a mood (English cards).
_PLAIN_ACTIONS = {
    "greet": ("smiles", "nods"),
    "care": ("softens", "listens quietly"),
    "happy": ("grins", "brightens"),
    "curious": ("tilts head", "listens"),
    "think": ("shrugs", "thinks for a moment"),
}

# A character who does not talk (the card's lines are actions and sounds): its own
# actions first, then these, and a few words of narration for some moves.
_WORDLESS_ACTIONS = {
    "greet": ("flicks an ear toward you", "looks up at you"),
    "care": ("leans against you gently", "settles down close beside you"),
    "happy": ("perks up", "bounces a little"),
    "curious": ("tilts head", "watches you closely"),
    "think": ("blinks slowly", "looks at you blankly"),
}
_WORDLESS_AFTER = {
    "welcome": "*seems to decide that {name} is a good name*",
    "your_name": "*seems to know exactly who {name} is*",
    "care_sad": "*stays close to you*",
    "care_worry": "*stays close to you*",
    "care_sad_topic": "*stays close to you*",
    "care_worry_topic": "*stays close to you*",
    "support": "*stays close to you*",
    "deflect_world": "*clearly has no idea*",
    "deflect_self": "*clearly has no idea*",
}

# -- what the person said ---------------------------------------------------------------

_GREETING = re.compile(
    r"^\W*(hi|hello|hey|hiya|heya|yo|howdy|hallo|servus|moin|salut|hola|ciao|greetings|good (morning|afternoon|evening)|"
    r"guten (morgen|tag|abend)|gr[üu](ß|ss) dich)\b[\s,!.~]*",
    re.I,
)
_QUESTION_START = re.compile(
    r"^\W*(what|who|where|when|why|how|which|whose|do|does|did|can|could|would|will|is|are|was|were|have|has|should|may|"
    r"wer|was|wo|wann|warum|wieso|weshalb|wie|welche[rsmn]?|kannst|bist|hast|magst|ist|sind|weißt)\b",
    re.I,
)
_TO_CHAR = re.compile(r"\b(you|your|yours|yourself|u|ur|du|dich|dir|dein\w*)\b", re.I)
_ABOUT_ME = re.compile(
    r"\b(remember|recall|know|told you)\b.*\b(me|my|i)\b|\bwhat('s| is) my\b|\bwho am i\b|\bdo you know my\b|"
    r"\berinnerst du dich\b|\bweißt du noch\b|\bwie heiße ich\b",
    re.I,
)
_MY_NAME_Q = re.compile(r"\b(what('s| is) my name|who am i|do you (know|remember) my name|wie heiße ich)\b", re.I)
_HOW_ARE_YOU = re.compile(
    r"\bhow (are|r) (you|u)\b|\bhow('s| is) it going\b|\bhow are things\b|\bhow have you been\b|\bhow('s| is| was) your (day|night|week)\b|"
    r"\bhow do you (do|feel)\b|\bwie geht'?s\b|\bwie geht es (dir|ihnen)\b|\balles (gut|klar)\b.*\?",
    re.I,
)
_ACK = re.compile(
    r"^\W*(ok|okay|k|kk|lol|lmao|haha+|hehe+|hah|hmm+|mhm|mm+|yeah|yea|yep|yes|no|nope|nah|sure|cool|nice|right|"
    r"alright|fine|true|same|wow|oh|ah|ja|nein|genau|stimmt|achso|aha)\W*$",
    re.I,
)
_AFFECTION = re.compile(
    r"\bi (?:really |just )?(?:love|like|adore) (?:you|u|talking to you|you so much)\b|"
    r"\byou(?:'re| are|r) (?:so |really |very |the )?(?:sweet|cute|nice|kind|lovely|amazing|awesome|best|great|funny|wonderful)\b|"
    r"\bich (?:hab|habe) dich (?:so )?(?:lieb|gern)\b|\bdu bist (?:so |echt |wirklich )?(?:süß|lieb|toll|nett)\b",
    re.I,
)
_HURT = re.compile(
    r"\byou(?:'re| are|r) (?:so |really |very )?(?:mean|rude|stupid|dumb|useless|annoying|boring|weird|creepy)\b|"
    r"\b(?:shut up|i hate you)\b|\bdu bist (?:so |echt )?(?:doof|blöd|gemein|nervig)\b",
    re.I,
)
_HUH = re.compile(r"^\W*(what|huh|wait what|sorry|pardon|eh|hä|was|wie bitte)\W*$", re.I)
_THANKS = re.compile(r"^\W*(thanks|thank you|thx|ty|cheers|danke|vielen dank|merci|gracias)\b", re.I)
_BYE = re.compile(
    r"\b(bye|goodbye|farewell|good night|gn|see (you|ya)|talk (to you )?later|gotta (go|run)|take care|ttyl|cya|adieu|"
    r"tsch[üu]ss|bis (bald|dann|später|morgen)|gute nacht|auf wiedersehen)\b",
    re.I,
)
_WHO_ARE_YOU = re.compile(
    r"\b(who are you|what('s| is) your name|tell me about yourself|introduce yourself|wer bist du|wie heißt du)\b", re.I
)
_ASKED_HOW = re.compile(r"\b(how are you|how's your|how was your|how about you|and you\?|how're you|wie geht|und dir\?)", re.I)

_NAME = r"([^\W\d_][^\W\d_'’-]{0,30})"
_INTRO_STRONG = re.compile(
    rf"\b(?:my name is|my name's|my names|name's|names|you can call me|call me|people call me|"
    rf"mein name ist|ich hei(?:ß|ss)e|nenn mich)\s+{_NAME}",
    re.I,
)
_INTRO_I_AM = re.compile(
    rf"\b(?:i am|i'm|i’m|im)\s+{_NAME}(?=\s*(?:[.!,;:)~]|$|\band\b|\bby the way\b|\bbtw\b|\bfrom\b|\bhere\b|\bnice\b))", re.I
)
_INTRO_SHORT = re.compile(rf"^\W*(?:(?:hi|hey|hello|hallo)\W+)?(?:it's|it is|this is|ich bin)\s+{_NAME}\W*$", re.I)
_NOT_NAMES = set(
    """so very really just not a an the fine good ok okay here back home sorry sure tired happy sad bored going from into
    in at doing feeling trying looking getting new done ready busy hungry thirsty sick ill lonely scared afraid angry mad
    upset excited nervous anxious stressed worried glad great well alright alive awake asleep late early lost confused
    curious serious kidding joking lol also still always never all only like kinda pretty quite too out off on up down
    over certain cool free hot cold old young tall short single married human ai bot alone fine busy broke exhausted
    depressed thrilled proud grateful thankful lucky fed stuck done finished leaving gonna about sleepy drunk high
    bad ugly fat smart dumb stupid right wrong unsure jealous shy sleeping working studying eating cooking there
    yours yes no nope yeah yep hey hi hello home outside inside afk brb with literally actually basically
    müde traurig froh glücklich gestresst krank hier da wieder zurück fertig nervös gut schlecht""".split()
)

_WORRY = (r"anxious|nervous|worried|worrying|scared|afraid|frightened|terrified|stressed|stressing|panicking|panicked|"
          r"overwhelmed|dreading|tense|gestresst|nervös|ängstlich|besorgt|angst")
_SAD = (r"sad|unhappy|depressed|miserable|terrible|awful|horrible|rough|lonely|tired|exhausted|drained|sick|hurting|"
        r"upset|angry|furious|frustrated|annoyed|heartbroken|crying|crushed|devastated|worst|sucks|sucked|gloomy|"
        r"down|bad|hard|tough|shitty|crappy|meh|traurig|müde|einsam|schlecht|mies|schrecklich\w*|furchtbar\w*|"
        r"wütend|krank|kaputt|erschöpft")
_HAPPY = (r"happy|glad|amazing|awesome|wonderful|fantastic|excited|thrilled|proud|delighted|ecstatic|overjoyed|"
          r"relieved|grateful|thankful|lucky|stoked|pumped|brilliant|incredible|best|great|glücklich|froh|super|"
          r"toll|wunderbar|fantastisch|begeistert")
_FINE = r"good|fine|ok|okay|alright|not bad|gut|ganz gut"
_SELF_STATE = (r"\b(?:i|i'm|im|i’m|i am|i feel|i'm feeling|feeling|i felt|i've been|i have been|i was|we're|we are|"
               r"ich bin|ich fühle mich|mir geht'?s?|mir geht es|es geht mir)\b(?:\s+[\w']+){0,3}?\s+")
_MOOD_PATTERNS = [
    (re.compile(rf"{_SELF_STATE}(?:not|n't|nicht)\s+(?:(?:so|very|too|that|really)\s+)?(?:{_HAPPY}|{_FINE})\b", re.I), "sad"),
    (re.compile(rf"{_SELF_STATE}(?:{_WORRY})\b|\bich habe angst\b|\bi'?m (?:so |really )?freaking out\b", re.I), "worry"),
    (re.compile(rf"{_SELF_STATE}(?:{_SAD})\b", re.I), "sad"),
    (re.compile(rf"\b(?:had|having|have had|it's been|it has been|what|such)\s+(?:a|an)?\s*(?:[\w']+\s+){{0,2}}?(?:{_SAD}|{_WORRY})\s+"
                r"(?:day|week|night|morning|time|year|month|weekend|tag|woche|nacht)\b", re.I), "sad"),
    (re.compile(rf"\b(?:einen|eine)\s+(?:{_SAD})\w*\s+(?:tag|woche|nacht)\b", re.I), "sad"),
    (re.compile(rf"\bmy\s+[\w']+(?:\s+[\w']+)?\s+(?:is|are|was|were|has been|got|seems)\s+(?:\w+\s+)?(?:{_SAD}|sick|ill|dying|dead)\b", re.I), "sad"),
    (re.compile(r"\b(died|passed away|broke up|dumped me|got fired|lost my job|i failed|failed my|miss (him|her|them)|"
                r"is gestorben|hat schluss gemacht)\b", re.I), "sad"),
    (re.compile(rf"{_SELF_STATE}(?:{_HAPPY})\b", re.I), "happy"),
    (re.compile(rf"\b(?:had|having|have had|it's been|what|such)\s+(?:a|an)?\s*(?:[\w']+\s+){{0,2}}?(?:{_HAPPY}|good)\s+"
                r"(?:day|week|night|morning|time|year|weekend|tag|woche)\b", re.I), "happy"),
    (re.compile(r"\b(got the job|passed my|i passed|got promoted|got engaged|got married|i won|we won|got accepted|got in)\b", re.I), "happy"),
    (re.compile(rf"{_SELF_STATE}(?:{_FINE})\b", re.I), "fine"),
]
_MOOD_WORDS = [  # a short answer to "how are you?" needs no "I'm"
    (re.compile(rf"\bnot\s+(?:so\s+|too\s+|that\s+)?(?:{_HAPPY}|{_FINE})\b", re.I), "sad"),
    (re.compile(rf"\b(?:{_WORRY})\b", re.I), "worry"),
    (re.compile(rf"\b(?:{_SAD})\b", re.I), "sad"),
    (re.compile(rf"\b(?:{_HAPPY})\b", re.I), "happy"),
    (re.compile(rf"\b(?:{_FINE})\b", re.I), "fine"),
]
_HAPPY_WORD = re.compile(rf"\b(?:{_HAPPY}|love|like|enjoy)\b", re.I)
_TOPIC = re.compile(
    r"\b(?:about|over|because of|for)\s+((?:my|the|this|that|our|his|her|their)\s+[\w' -]{2,40}?)(?=\s*(?:[.!?,;]|$|\band\b|\bbut\b|\bbecause\b))",
    re.I,
)
_SWAP = {
    "i": "you", "me": "you", "my": "your", "mine": "yours", "myself": "yourself", "i'm": "you're", "im": "you're",
    "i’m": "you're", "i've": "you've", "i'll": "you'll", "i'd": "you'd", "am": "are", "we": "you", "us": "you",
    "our": "your", "ours": "yours", "you": "me", "your": "my", "yours": "mine", "yourself": "myself", "you're": "I'm",
    "u": "me", "ur": "my",
}


def swap_person(text: str) -> str:
    """First person to second and back: "my exam" -> "your exam", "talking to you" -> "talking to me"."""
    out = re.sub(r"[\w’']+", lambda m: _SWAP.get(m.group(0).lower(), m.group(0)), text)
    return re.sub(r"\byou was\b", "you were", out)


def feeling(text: str, asked_how: bool = False) -> str | None:
    """The mood of a message about the person's own state: "worry", "sad", "happy", "fine" or None."""
    for pattern, mood in _MOOD_PATTERNS:
        if pattern.search(text):
            return mood
    if asked_how and len(text.split()) <= 8:
        for pattern, mood in _MOOD_WORDS:
            if pattern.search(text):
                return mood
    return None


def feeling_topic(text: str) -> str | None:
    m = _TOPIC.search(text)
    return swap_person(m.group(1).strip()) if m else None


def introduced_name(text: str, char_name: str = "") -> tuple[str, tuple[int, int]] | None:
    """The name in "I'm Zoe" / "my name is Zoe" / "call me Zoe", with where it was said."""
    found = None
    for pattern in (_INTRO_STRONG, _INTRO_SHORT, _INTRO_I_AM):
        m = pattern.search(text)
        if not m:
            continue
        word = m.group(1)
        low = word.lower()
        if low in _NOT_NAMES or len(word) < 2:
            continue
        if pattern is _INTRO_I_AM and word[0].islower():
            # lower-case "i'm zoe" is a name only when it does not look like a state word
            if len(word) > 12 or re.search(r"(ing|ed|ous|ful|less|ive|able|ish)$", low) or len(text.split()) > 12:
                continue
        if pattern is _INTRO_SHORT and word[0].islower():
            continue
        if char_name and low in (char_name.lower(), char_name.split()[0].lower()):
            continue
        found = (_cap(word), m.span())
        break
    return found


def speakable_name(name: str) -> str:
    """The name to call someone by: not a placeholder, not a handle like "tg_user_481"."""
    name = name.strip()
    if name.lower() in ("", "friend", "user", "you") or re.search(r"[\d_@#/\\]", name) or len(name) > 30:
        return ""
    return name


def question(text: str) -> bool:
    return text.rstrip().endswith("?") or bool(_QUESTION_START.match(text))


# Statements reflected back when the card has nothing that fits.
_ACTIVITY = "went|was|did|saw|watched|played|read|visited|tried|met|spent|took|ate|drank|ran|finished|started|learned|learnt|walked|worked|studied"
_ACQUIRE = "got|bought|found|made|won|built|wrote|baked|cooked|painted|drew|adopted"
_REFLECT: list[tuple[re.Pattern[str], tuple[str, ...]]] = [
    (re.compile(r"\bi\s+(?:really\s+|just\s+|totally\s+|kind of\s+|kinda\s+)?(?P<v>love|like|adore|enjoy)\s+(?P<x>.+)", re.I),
     ("{X}? What do you {v} most about {it}?", "Oh, {x}! What got you into {it}?")),
    (re.compile(r"\bi\s+(?:really\s+)?(?P<v>hate|dislike|can't stand|cannot stand|don't like)\s+(?P<x>.+)", re.I),
     ("What is it about {x} that gets to you?", "Ugh, {x}. What happened?")),
    (re.compile(r"\bi\s+(?:really\s+)?(?P<v>want|need|wish)\s+(?P<x>.+)", re.I),
     ("Why do you {v} {x}?", "What would change for you, with {x}?")),
    (re.compile(r"\bi\s*(?:'m|’m| am)\s+(?P<x>(?:going|planning|thinking|about|trying|learning|working|starting|moving|getting|reading|watching|making)\b.+)", re.I),
     ("You're {x}? Tell me more!", "Ooh, you're {x}? How come?")),
    (re.compile(rf"\bi\s+(?:just\s+|finally\s+)?(?P<v>{_ACQUIRE})\s+(?P<x>.+)", re.I),
     ("You {v} {x}? Nice! Tell me about {it}.", "Oh, you {v} {x}! How is {it}?")),
    (re.compile(rf"\bi\s+(?:just\s+|finally\s+)?(?P<v>{_ACTIVITY})\s+(?P<x>.+)", re.I),
     ("You {v} {x}? How was it?", "Oh, you {v} {x}! How did it go?")),
    (re.compile(r"\bmy\s+(?P<n>[\w']+(?:\s+[\w']+)?)\s+(?P<v>is|are|was|were|has|have|just|keeps|\w+ed)\s+(?P<x>.+)", re.I),
     ("Your {n} {v} {x}? Tell me more.", "Wait, your {n} {v} {x}? What happened?")),
    (re.compile(r"\bi(?:'m|’m| am) (?:originally )?from\s+(?P<x>.+)", re.I),
     ("{X}? What's it like there?", "Oh, {x}! Do you miss it?")),
    (re.compile(r"\bi (?:live|stay) in\s+(?P<x>.+)", re.I),
     ("{X}? What's it like living there?", "Oh, you live in {x}? Tell me about it.")),
    (re.compile(r"\bi\s+(?:think|believe|guess|feel like)\s+(?P<x>.+)", re.I),
     ("Why do you think {x}?", "What makes you say that?")),
]
_CLAUSE_END = re.compile(r"\s*(?:[,.;!?:]|\s-\s|\band\b|\bbut\b|\bbecause\b|\bso\b|\bwhich\b|\bwhen\b|\bwhile\b)", re.I)


def _phrase(text: str, max_words: int = 7) -> str:
    m = _CLAUSE_END.search(text)
    if m:
        text = text[: m.start()]
    return swap_person(" ".join(text.split()[:max_words])).strip(" '\"*")


def reflect(text: str) -> tuple[str, ...]:
    """Ways to give a statement back to the person, or () when none of the patterns fit."""
    for pattern, templates in _REFLECT:
        m = pattern.search(text)
        if not m:
            continue
        x = _phrase(m.group("x"))
        if not x or len(x) < 2 or x.lower() in ("me", "you", "it", "that", "this", "them"):
            continue
        groups = m.groupdict()
        verb = (groups.get("v") or "").lower()
        verb = {"was": "were"}.get(verb, verb)
        last = x.split()[-1].lower()
        it = "them" if last.endswith("s") and not last.endswith(("ss", "us", "is")) and not re.match(r"(a|an)\s", x, re.I) else "it"
        noun = swap_person(groups.get("n") or "")
        return tuple(t.format(x=x, X=_cap(x), v=verb, it=it, n=noun) for t in templates)
    return ()


# -- the card's material ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CardLine:
    """Something the character could say: ``say``, matched by meaning against ``key``."""

    say: str
    key: str
    kind: str  # "example", "lore", "self" (its description), "greeting"
    mood: str | None = None  # the mood of what was said to it (examples)
    authored: bool = True  # the card's own words for the character; False: made from prose, said in the card's register


def _speaker_pattern(char: str, user: str) -> re.Pattern[str]:
    names = name_forms(char) | {user, "user", "you", "{{char}}", "{{user}}", "<bot>", "<user>"}
    alt = "|".join(re.escape(n) for n in sorted((n for n in names if n), key=len, reverse=True))
    return re.compile(rf"^\s*(?:\*\*)?(?P<who>{alt}|\{{\{{\s*(?:char|user)\s*\}}\}})(?:\*\*)?\s*:\s?(?P<said>.*)$", re.I)


def dialogue_lines(text: str, char: str, user: str) -> list[tuple[str | None, str]] | None:
    """An exchange written as ``{{user}}: ...`` / ``{{char}}: ...``: the character's turns,
    each with what was said to it (None when it speaks first). None when ``text`` is not one."""
    speaker = _speaker_pattern(char, user)
    char_tags = {n.lower() for n in name_forms(char)} | {"<bot>"}
    turns: list[list[str]] = []  # [who, text]
    tagged = False
    for line in _START_MARK.sub("\n", text).splitlines():
        m = speaker.match(line)
        if m:
            tag = re.sub(r"\s+", "", m.group("who").lower())
            who = "char" if tag in char_tags or tag == "{{char}}" else "user"
            turns.append([who, m.group("said").strip()])
            tagged = True
        elif line.strip() and turns:
            turns[-1][1] = (turns[-1][1] + "\n" + line.strip()).strip()
    if not tagged:
        return None
    out: list[tuple[str | None, str]] = []
    for i, (who, said) in enumerate(turns):
        if who != "char" or not said:
            continue
        prompt = turns[i - 1][1] if i > 0 and turns[i - 1][0] == "user" else None
        out.append((_render(prompt, char, user) if prompt else None, _render(said, char, user)))
    return out


def _strip_formatting(text: str) -> str:
    t = re.sub(r"<[^<>\n]{1,40}>", " ", text)  # html-like tags
    t = t.replace("**", "").replace("__", "").replace("~~", "")
    t = re.sub(r"^\s*#+\s*", "", t, flags=re.M)  # headings
    t = re.sub(r"^\s*(?:[-•]|\d+[.)])\s+", "", t, flags=re.M)  # list bullets
    t = re.sub(r"[\[\]{}|]", "\n", t)  # W++ / PList brackets: each bracket a boundary
    t = re.sub(r"\(\s*(?:ooc|note)\b[^)]*\)", " ", t, flags=re.I)
    return t


_LABEL_LINE = re.compile(r"^(?P<label>[^:.!?]{2,40}):\s*(?P<value>.+)$")


def prose_sentences(text: str) -> list[str]:
    """The sentences of a lorebook entry or description, without meta-formatting.

    A "Label: value; value" line (W++ / PList style) becomes one sentence, "Label: value, value."
    """
    out = []

    def keep(s: str) -> None:
        s = " ".join(s.split()).strip(" *")
        if len(s) >= 12 and len(s.split()) >= 3 and not _META.search(s):
            out.append(s if s[-1] in ".!?…\"'”’)" else s + ".")

    for line in _strip_formatting(text).splitlines():
        line = line.strip(" \t-–—*\"'")
        if not line or re.match(r"^(ooc|note|author'?s note|a/n)\b", line, re.I):
            continue
        m = _LABEL_LINE.match(line)
        if m and not re.search(r"[.!?]\s", m.group("value")):
            parts = [f.strip(" .") for f in re.split(r"[;,]", m.group("value")) if f.strip(" .")]
            if parts and all(len(f.split()) <= 8 for f in parts):
                keep(f"{m.group('label').strip()}: {', '.join(parts)}")
                continue
        for part in line.split(";"):
            for sm in _SENTENCE.finditer(part):
                keep(sm.group(0))
    return out


_CLAUSE = re.compile(r",\s+|\s+(?:and|but|who|which|whose|where|while)\s+|:\s+")


def clause_keys(sentence: str) -> list[str]:
    """The sentence and its clauses: a long sentence is matched by its best part."""
    parts = [p.strip() for p in _CLAUSE.split(sentence) if len(p.split()) >= 3]
    return [sentence] + [p for p in parts if p != sentence]


def _conjugate_first(verb: str) -> str:
    """The verb after "I": "is" -> "am", "lives" -> "live"; past tense and modals unchanged."""
    low = verb.lower()
    fixed = {"is": "am", "has": "have", "does": "do", "goes": "go", "was": "was", "isn't": "am not",
             "doesn't": "don't", "hasn't": "haven't"}
    if low in fixed:
        return fixed[low]
    if low.endswith("ies") and len(low) > 4:
        return verb[:-3] + "y"
    if low.endswith(("sses", "shes", "ches", "xes", "zes", "oes")):
        return verb[:-2]
    if low.endswith("s") and not low.endswith(("ss", "us", "is")) and len(low) > 3:
        return verb[:-1]
    return verb


_SUBJECT_BEFORE = re.compile(r"(?:^|[,;]\s*|\b(?:and|but|then|when|while|because|so|that|where|if|who)\s+)$", re.I)
_ADVERB = r"(?:(?:\w+ly|always|never|often|still|also|only|sometimes|usually|rarely|even|just|now)\s+)?"
_OBJECT_HER = re.compile(r"\b(her)\b(?=\s*(?:$|[.,;!?]|to\b|and\b|with\b|for\b|from\b|in\b|on\b|at\b|by\b|a\b|an\b|the\b|that\b|up\b|out\b|off\b|again\b|too\b))", re.I)


_TITLES = set(
    "captain ser sir lady lord dame dr doctor professor prof mr mrs ms miss madam master mistress king queen prince "
    "princess oma opa tante onkel frau herr the of von van de der die das la le el du".split()
)


def name_forms(char: str) -> set[str]:
    """How a card may name its character: "Captain Brann" is also "Brann"."""
    return {char} | {p for p in char.split() if len(p) >= 3 and p.lower() not in _TITLES}


def first_person(sentence: str, char: str, pronoun_is_char: bool = False) -> tuple[str, bool]:
    """A third-person sentence about the character as the character says it.

    "Mira's telescope is a refractor she bought from a sailor." -> "My telescope is a
    refractor I bought from a sailor." Returns the sentence and whether it was about
    the character. English only; other sentences come back unchanged.
    """
    alt = "|".join(re.escape(n) for n in sorted(name_forms(char), key=len, reverse=True))
    starts_with_char = bool(re.match(rf"^(?:{alt})\b", sentence)) or (
        pronoun_is_char and bool(re.match(r"^(she|he)\b", sentence, re.I))
    )
    if not re.search(rf"\b(?:{alt})\b", sentence) and not starts_with_char:
        return sentence, False
    s = re.sub(rf"\b(?:{alt})(?:'s|’s)(?=\s)", "my", sentence)

    def name(m: re.Match[str]) -> str:
        before = m.string[: m.start()]
        if _SUBJECT_BEFORE.search(before):
            return "I " + m.group(1) + _conjugate_first(m.group(2))
        return "me " + m.group(1) + m.group(2)

    s = re.sub(rf"\b(?:{alt})\b\s+({_ADVERB})([\w']+)", name, s)
    s = re.sub(rf"\b(?:{alt})\b", "me", s)
    if starts_with_char:
        s = re.sub(rf"\b(?:she|he)\s+({_ADVERB})([\w']+)", lambda m: "I " + m.group(1) + _conjugate_first(m.group(2)), s, flags=re.I)
        s = re.sub(r"\b(?:herself|himself)\b", "myself", s, flags=re.I)
        s = _OBJECT_HER.sub("me", s)
        s = re.sub(r"\b(?:her|his)\b", "my", s, flags=re.I)
        s = re.sub(r"\bhim\b", "me", s, flags=re.I)
    if re.match(r"^I\b", s):
        # "I film ..., name every cat ... and drag my telescope": coordinated verbs follow the subject
        s = re.sub(
            r"((?:,|\band)\s+(?:and\s+)?)([a-z]+s)(?=\s+(?:every|the|a|an|my|all|some|it|them|me|to|up|out|at|in|on|with|for|from|about|into|over)\b)",
            lambda m: m.group(1) + _conjugate_first(m.group(2)), s,
        )
    s = re.sub(r"^I am\b", "I'm", s)
    s = re.sub(r"\bi\b", "I", s)
    return _cap(s), True


_SUBJECT_IS = re.compile(
    r"^(?P<subj>(?:The |An? )?[A-Z][\w'’-]*(?:\s+(?:[A-Z][\w'’-]*|of|the|de|du|la|von|van|and|&))*)\s+"
    r"(?P<verb>is|are|was|were)\s+(?P<rest>.+)$"
)
_ARTICLE = re.compile(r"^(a|an|the|one|my|our|his|her|their|home|where|what)\b", re.I)


def spoken_lore(sentence: str, char: str, language: str, frame: int, pronoun_is_char: bool = False) -> str:
    """One lorebook sentence as the character says it, in one of a few frames (``frame`` picks)."""
    if language == "de":
        m = re.match(r"^(?:Der |Die |Das )?(?P<subj>[A-ZÄÖÜ][\w'’-]*(?:\s+[A-ZÄÖÜ][\w'’-]*)*)\s+(?P<verb>ist|sind|war)\s+(?P<rest>.+)$", sentence)
        if m and frame % 2 == 0 and m.group("subj") not in char.split():
            return f"{m.group('subj')}? Das {m.group('verb')} {m.group('rest')}"
        return sentence
    label = _LABEL_LINE.match(sentence)
    if label and len(label.group("label").split()) <= 4:
        name, value = label.group("label").strip(), _cap(label.group("value").strip())
        return (f"{name}? {value}", f"Oh, {_lower_opening(name)}? {value}")[frame % 2]
    if language != "en":
        return sentence
    said, about_me = first_person(sentence, char, pronoun_is_char)
    if about_me:
        return (said, f"Well, {_lower_opening(said)}" if not said.startswith("I") else f"Well, {said}")[frame % 2]
    m = _SUBJECT_IS.match(sentence)
    if m and m.group("subj").split()[-1] not in ("I", "It", "This", "That", "There"):
        verb, rest, subj = m.group("verb"), m.group("rest"), m.group("subj")
        pronoun = {"is": "that's" if _ARTICLE.match(rest) else "it's", "are": "they're", "was": "that was", "were": "they were"}[verb]
        inner = _lower_opening(subj)
        return (f"{subj}? {_cap(pronoun)} {rest}", f"Oh, {inner}? {_cap(pronoun)} {rest}", f"{subj}? Sure, {pronoun} {rest}")[frame % 3]
    return (sentence, f"Oh, {_lower_opening(sentence)}", f"From what I know, {_lower_opening(sentence)}")[frame % 3]


@dataclass(frozen=True)
class _Voice:
    """The card's register, read from its own lines."""

    language: str
    uses_actions: bool
    quotes_speech: bool
    lowercase: bool
    actions: tuple[str, ...]
    action_moods: dict  # mood -> ((action, similarity to the mood), ...), best first
    nonverbal: bool = False  # a character who does not talk (a cat): actions and sounds, no words
    sounds: tuple[str, ...] = ()  # what it says instead ("mrrp.")


class _Embedded:
    """Card lines with their key embeddings."""

    __slots__ = ("lines", "matrix")

    def __init__(self, lines: Sequence[CardLine], matrix: np.ndarray):
        self.lines = tuple(lines)
        self.matrix = matrix

    def authored_only(self) -> _Embedded:
        keep = [i for i, ln in enumerate(self.lines) if ln.authored]
        return self if len(keep) == len(self.lines) else _Embedded([self.lines[i] for i in keep], self.matrix[keep])


_ACTED = re.compile(r'^\*(?P<action>[^*\n]+)\*\s*"(?P<said>[^"]*)"$')


def _join_speech(first: str, second: str) -> str:
    """Two lines as one turn: `*waves* "Hi."` + `*smiles* "How was it?"` -> `*waves* "Hi. How was it?"`."""
    if not second:
        return first
    a, b = _ACTED.match(first), _ACTED.match(second)
    if a and b:
        return f'*{a.group("action")}* "{a.group("said")} {b.group("said")}"'
    if first.startswith("*") and second.startswith("*"):
        first = _ACTION.sub("", first, count=1).strip()
    return f"{first} {second}"


# -- the backend ------------------------------------------------------------------------------


class LiteTextGenerator:
    """In-character replies from the card's own material (see the module docstring)."""

    name = "lite"

    def __init__(self, embedder: Embedder, min_similarity: float = _FIT["example"], cache_size: int = 512):
        self.embedder = embedder
        self.fit = dict(_FIT, example=min_similarity, question=max(min_similarity, _FIT["question"]))
        self._cache: OrderedDict[tuple, object] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    async def aclose(self) -> None:
        return None

    async def stream(self, request: TextRequest) -> AsyncIterator[str]:
        text = await self.generate(request)
        parts = re.split(r"(?<=[.!?…])(\s+)", text)
        for i in range(0, len(parts), 2):
            piece = parts[i] + (parts[i + 1] if i + 1 < len(parts) else "")
            if piece:
                yield piece

    async def generate(self, request: TextRequest) -> str:
        # New card material is embedded on first use: off the event loop.
        return await asyncio.to_thread(self.compose, request)

    # -- caching ------------------------------------------------------------------------

    def _cached(self, key: tuple, make):
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        value = make()
        with self._lock:
            self._cache[key] = value
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return value

    def _embed_lines(self, lines: list[CardLine]) -> _Embedded:
        matrix = self.embedder.embed([ln.key for ln in lines]) if lines else np.zeros((0, self.embedder.dim), np.float32)
        return _Embedded(lines, np.asarray(matrix, dtype=np.float32))

    def _example_lines(self, examples: tuple[Example, ...]) -> _Embedded:
        def make():
            return self._embed_lines(
                [CardLine(e.response.strip(), e.prompt.strip(), "example", feeling(e.prompt)) for e in examples
                 if e.prompt.strip() and e.response.strip()]
            )

        return self._cached(("examples", examples), make)

    def _lore_lines(self, entry: str, char: str, user: str, language: str) -> _Embedded:
        def make():
            lines: list[CardLine] = []
            turns = dialogue_lines(entry, char, user)
            if turns is not None:
                for prompt, said in turns:
                    lines.append(CardLine(said, prompt or _speech(said) or said, "example" if prompt else "lore", feeling(prompt or "")))
            else:
                previous_about_char = False
                for sentence in prose_sentences(_render(entry, char, user)):
                    said = spoken_lore(sentence, char, language, int(hashlib.sha256(sentence.encode()).digest()[0]),
                                       pronoun_is_char=previous_about_char)
                    previous_about_char = any(sentence.startswith(n) for n in name_forms(char))
                    lines += [CardLine(said, key, "lore", authored=False) for key in clause_keys(sentence)]
            return self._embed_lines(lines)

        return self._cached(("lore", entry, char, user, language), make)

    def _self_lines(self, description: str, char: str, user: str, language: str) -> _Embedded:
        def make():
            lines = []
            if language == "en":
                for sentence in prose_sentences(_render(description, char, user)):
                    if user and user.lower() in sentence.lower():
                        continue  # the card speaking about the person: not something to tell them
                    said, about_me = first_person(sentence, char, pronoun_is_char=True)
                    if about_me:
                        keys = [re.sub(r"^([a-z]+s)\b", lambda m: "I " + _conjugate_first(m.group(1)), k) for k in clause_keys(said)]
                        lines += [CardLine(said, key, "self", authored=False) for key in keys]
            return self._embed_lines(lines)

        return self._cached(("self", description, char, user, language), make)

    def _greeting_lines(self, greetings: tuple[str, ...], char: str, user: str) -> _Embedded:
        def make():
            lines = []
            for g in greetings:
                turns = dialogue_lines(g, char, user)
                texts = [t for _, t in turns] if turns else [g]
                for text in texts:
                    quoted = [a or b for a, b in _QUOTED.findall(text)]
                    pieces = quoted or [p for p in re.split(r"\n\s*\n", _ACTION.sub(" ", text)) if p.strip()]
                    for piece in pieces:
                        for m in _SENTENCE.finditer(piece):
                            s = " ".join(m.group(0).split()).strip(" *")
                            if len(s.split()) >= 4 and not s.rstrip(_CLOSERS).endswith("?"):
                                lines.append(CardLine(f'"{s}"' if quoted else s, s, "greeting"))
            return self._embed_lines(lines)

        return self._cached(("greetings", greetings, char, user), make)

    def _voice(self, examples: tuple[Example, ...], greetings: tuple[str, ...], description: str) -> _Voice:
        def make():
            card_lines = [e.response for e in examples] + list(greetings)
            language = detect_language(card_lines or [description])
            with_actions = [t for t in card_lines if _ACTION.search(t)]
            speech_starts = [s for s in (_speech(t) for t in card_lines) if s and s[0].isalpha()]
            actions = []
            for t in card_lines:
                for a in _ACTION.findall(t):
                    a = " ".join(a.split())
                    if len(a.split()) <= 8 and a not in actions:
                        actions.append(a)
            moods: dict[str, tuple[tuple[str, float], ...]] = {}
            if actions:
                A = self.embedder.embed(actions)
                anchors = self.embedder.embed(list(_MOOD_ANCHORS.values()))
                for mood, row in zip(_MOOD_ANCHORS, anchors @ A.T):
                    scores = [float(s) + (0.25 if _MOOD_ACTION_WORDS[mood].search(a) else 0.0) for a, s in zip(actions, row)]
                    moods[mood] = tuple(sorted(zip(actions, scores), key=lambda x: -x[1]))
            speech_words = [len(_WORD.findall(_speech(t))) for t in card_lines]
            sounds = []
            for t in card_lines:
                sp = _speech(t)
                if sp and len(_WORD.findall(sp)) <= 3 and sp not in sounds:
                    sounds.append(sp)
            nonverbal = (
                language == "en" and len(with_actions) >= 2
                and sum(n <= 3 for n in speech_words) >= 0.6 * len(speech_words)
            )
            return _Voice(
                nonverbal=nonverbal,
                sounds=tuple(sounds),
                language=language,
                uses_actions=bool(card_lines) and len(with_actions) >= 0.5 * len(card_lines),
                quotes_speech=bool(with_actions) and sum(bool(_QUOTED.search(t)) for t in with_actions) >= 0.5 * len(with_actions),
                lowercase=len(speech_starts) >= 3 and sum(s[0].islower() for s in speech_starts) >= 0.6 * len(speech_starts),
                actions=tuple(actions),
                action_moods=moods,
            )

        return self._cached(("voice", examples, greetings, description), make)

    # -- one reply ------------------------------------------------------------------------

    def compose(self, request: TextRequest) -> str:
        return _Turn(self, request).reply()


class _Turn:
    """Everything one reply needs: the message, the conversation so far, the card."""

    def __init__(self, gen: LiteTextGenerator, request: TextRequest):
        self.gen = gen
        self.request = request
        self.char = request.char_name or "me"
        self.said = request.last_user_text.strip()
        self.description = request.description or ""
        replies = [m.content for m in request.messages if m.role == "assistant" and m.content.strip()]
        self.recent = [_norm(r) for r in replies[-RECENT_REPLIES:]]
        self.last_reply = replies[-1] if replies else ""
        users = [m.content for m in request.messages if m.role == "user"]
        self.earlier_users = users[:-1]
        self.user = speakable_name(request.user_name)
        for earlier in reversed(users[:-1]):  # a name given earlier in this chat is the one to use
            intro = introduced_name(earlier, self.char)
            if intro:
                self.user = intro[0]
                break
        # a request's own seed (an answer written again) picks other lines for the same context
        extra = "" if request.seed is None else f"|{request.seed}"
        seed = hashlib.sha256(f"{self.said}|{self.last_reply}{extra}".encode()).digest()[:8]
        self.rng = np.random.default_rng(int.from_bytes(seed, "little"))
        self.voice = gen._voice(request.examples, request.greetings, self.description)
        self.stock_lines = STOCK_LINES.get(self.voice.language)  # None: only the card's own lines

    # -- choosing -----------------------------------------------------------------------

    def last_use(self, text: str) -> int:
        """-1 when ``text`` was not said lately, else how recently (higher is more recent)."""
        n = _norm(text)
        if not n:
            return len(self.recent)
        for i in range(len(self.recent) - 1, -1, -1):
            r = self.recent[i]
            if n in r or (len(r) >= 20 and r in n):
                return i
        return -1

    def fresh(self, text: str) -> bool:
        return self.last_use(text) < 0

    def pick(self, options: Sequence[str]) -> str:
        """A seeded choice among options not said lately (else the one said longest ago)."""
        options = [o for o in options if o]
        unused = [o for o in options if self.fresh(o)]
        if unused:
            return unused[int(self.rng.integers(len(unused)))]
        return min(options, key=self.last_use)

    def stock(self, move: str, **fields) -> str | None:
        """A stock line for ``move`` in the card's language and register, or None for other languages."""
        if self.voice.nonverbal:
            return self.without_words(move, fields.get("name") or fields.get("user") or self.user)
        if self.stock_lines is None or move not in self.stock_lines:
            return None
        user = fields.pop("user", self.user)

        def filled(m: str) -> list[str]:
            return [
                t.format(_user=f", {user}" if user else "", user=user or "", char=self.char, **fields)
                for t in self.stock_lines.get(m, ())
                if user or "{user}" not in t
            ]

        lines = filled(move)
        if lines and not any(self.fresh(t) for t in lines) and move in _SIBLING_MOVES:
            # every line of this move was said lately: a neighbouring move before a repeat
            other = _SIBLING_MOVES[move]
            if any(self.fresh(t) for t in filled(other)):
                move, lines = other, filled(other)
        return self.in_register(self.pick(lines), move) if lines else None

    def without_words(self, move: str, name: str) -> str:
        """A character who does not talk answers with one of its actions and sounds."""
        mood = _MOVE_MOOD.get(move, "curious")
        own = [a for a, score in self.voice.action_moods.get(mood, ())[:3] if score >= _ACTION_FIT]
        actions = own + list(_WORDLESS_ACTIONS[mood])
        after = _WORDLESS_AFTER.get(move, "")
        after = after.format(name=name) if name or "{name}" not in after else ""
        sounds = list(self.voice.sounds) or [""]
        options = [" ".join(x for x in (f"*{a}*", s, after) if x) for a in actions for s in sounds]
        return self.pick(options)

    def in_register(self, line: str, move: str) -> str:
        v = self.voice
        if v.lowercase and not line.startswith(("I ", "I'", self.user or "\0", self.char)):
            line = line[:1].lower() + line[1:]
        if v.uses_actions and v.actions:
            mood = _MOVE_MOOD.get(move, "curious")
            scored = v.action_moods.get(mood, ())
            ranked = [a for a, score in scored[:2] if score >= _ACTION_FIT]
            if not ranked:
                ranked = list(_PLAIN_ACTIONS[mood]) if v.language == "en" else [a for a, _ in scored[:1]]
            last = _norm(self.last_reply)
            choices = [a for a in ranked if _norm(a) not in last] or ranked[:1]
            action = choices[int(self.rng.integers(len(choices)))]
            line = f'*{action}* "{line}"' if v.quotes_speech else f"*{action}* {line}"
        return line

    def personal(self, text: str, name: str | None) -> str:
        """A card line with the name the person gave where another one was rendered."""
        name = name or self.user
        rendered = speakable_name(self.request.user_name)  # "friend" stands in for no name: left alone
        if name and rendered and rendered != name:
            text = re.sub(rf"\b{re.escape(rendered)}\b", name, text)
        return text

    def card_candidates(self, text: str, vector: np.ndarray) -> list[tuple[float, CardLine]]:
        """(fit, line) for every card line that may be said to ``text``, best first.

        Fit is similarity minus the line kind's threshold: 0 or more means it fits."""
        req, gen = self.request, self.gen
        blocks = [gen._example_lines(req.examples)]
        blocks += [gen._lore_lines(e, self.char, req.user_name, self.voice.language) for e in req.lore if e.strip()]
        if self.voice.nonverbal:  # it does not talk: only what the card itself has it do
            blocks = [b.authored_only() for b in blocks]
        elif self.description.strip() and _TO_CHAR.search(text):
            blocks.append(gen._self_lines(self.description, self.char, req.user_name, self.voice.language))
        if self.recent:
            blocks.append(gen._greeting_lines(req.greetings, self.char, req.user_name))
        asked = question(text)
        out = []
        for block in blocks:
            if not block.lines:
                continue
            sims = block.matrix @ vector
            for line, s in zip(block.lines, sims):
                kind = "question" if line.kind == "example" and asked else line.kind
                out.append((float(s) - self.gen.fit[kind], line))
        out.sort(key=lambda c: -c[0])
        return out

    def choose_line(self, candidates: list[tuple[float, CardLine]], min_fit: float = 0.0) -> CardLine | None:
        fitting = [(f, ln) for f, ln in candidates if f >= min_fit and self.fresh(ln.say)]
        if not fitting:
            return None
        best = fitting[0][0]
        close = [c for c in fitting[:3] if c[0] >= best - 0.05]
        weights = np.exp(np.array([c[0] for c in close]) * 20.0)
        return close[int(self.rng.choice(len(close), p=weights / weights.sum()))][1]

    # -- the moves ------------------------------------------------------------------------

    def reply(self) -> str:
        if not self.said:
            return self.opening() or self.stock("hello_again") or self.own_line()

        intro = introduced_name(self.said, self.char)
        if intro is not None:
            return self.welcome(*intro)

        if _ABOUT_ME.search(self.said):
            answer = self.about_the_person()
            if answer:
                return answer

        rest = _GREETING.sub("", self.said, count=1).strip()
        if _GREETING.match(self.said) and len(_WORD.findall(rest)) < 2:
            if not self.recent:
                opening = self.opening()
                if opening:
                    return opening
            hello = self.stock("hello_again")
            if hello:
                return hello
        text = rest or self.said
        q = self.gen.embedder.embed([text])[0]
        return self.answer(text, q)

    def answer(self, text: str, q: np.ndarray, name: str | None = None) -> str:
        candidates = self.card_candidates(text, q)
        mood = feeling(text, asked_how=bool(_ASKED_HOW.search(self.last_reply)))
        if mood is not None:
            return self.care(text, mood, candidates, name)

        line = self.choose_line(candidates)
        if line is not None:
            said = self.personal(line.say, name)
            return said if line.authored else self.in_register(said, "tell")

        if _HUH.match(text):
            return self.stock("huh") or self.own_line(candidates)
        if _AFFECTION.search(text):
            return self.stock("affection") or self.own_line(candidates)
        if _HURT.search(text):
            return self.stock("hurt") or self.own_line(candidates)
        if _HOW_ARE_YOU.search(text):
            return self.stock("how_are_you") or self.own_line(candidates)
        if _THANKS.match(text):
            return self.stock("thanks") or self.own_line(candidates)
        if _BYE.search(text):
            return self.stock("bye") or self.own_line(candidates)
        if _WHO_ARE_YOU.search(text):
            return self.introduce_myself() or self.stock("who_are_you") or self.own_line(candidates)

        if candidates and candidates[0][0] >= _SAID_IT_ALL_FIT:
            # the line that fits was said lately: say so rather than repeat it
            said_it_all = self.stock("said_it_all")
            if said_it_all:
                return said_it_all
        if question(text):
            move = "deflect_self" if _TO_CHAR.search(text) else "deflect_world"
            return self.stock(move) or self.own_line(candidates)
        if (self.stock_lines is not None and any(feeling(u) in ("sad", "worry") for u in self.earlier_users[-2:])
                and len(_WORD.findall(text)) >= 4 and not _HAPPY_WORD.search(text)):
            # more about what upset them
            return self.stock("support")
        if _ACK.match(text):
            return self.stock("ack") or self.own_line(candidates)
        if self.voice.language == "en":
            reflections = [r for r in reflect(text) if self.fresh(r)]
            if reflections:
                return self.in_register(self.pick(reflections), "reflect")
        return self.stock("listen") or self.own_line(candidates)

    def introduce_myself(self) -> str | None:
        """ "Who are you?": the first thing the description says about the character."""
        if not self.description.strip() or self.voice.language != "en" or self.voice.nonverbal:
            return None
        block = self.gen._self_lines(self.description, self.char, self.request.user_name, "en")
        for line in block.lines:
            if self.fresh(line.say):
                if self.char in line.say:
                    said = line.say
                elif re.match(r"I'm (a|an|the)\b", line.say):
                    said = f"I'm {self.char}, {line.say[4:]}"
                else:
                    said = f"I'm {self.char}. {line.say}"
                return self.in_register(said, "who_are_you")
        return None

    def opening(self) -> str | None:
        """The card's first message, or the next greeting not said yet."""
        return next((g for g in self.request.greetings if g.strip() and self.fresh(g)), None)

    def welcome(self, name: str, span: tuple[int, int]) -> str:
        welcome = self.stock("welcome", name=name, user=name)
        rest = (self.said[: span[0]] + " " + self.said[span[1] :]).strip()
        rest = _GREETING.sub("", rest, count=1)
        rest = re.sub(r"^[\s,.;!~-]*(?:and|but|so|btw|by the way)?\b[\s,]*", "", rest, flags=re.I).strip()
        follow = ""
        if len(_WORD.findall(rest)) >= 2:
            q = self.gen.embedder.embed([rest])[0]
            follow = self.answer(rest, q, name)
        if welcome is None:
            return follow or self.own_line()
        return _join_speech(welcome, follow)

    def about_the_person(self) -> str | None:
        req = self.request
        if _MY_NAME_Q.search(self.said) and self.user:
            return self.stock("your_name")
        if req.facts:
            yours = [to_second_person(f, self.user) for f in req.facts]
            vecs = self.gen.embedder.embed([self.said, *yours])
            sims = vecs[1:] @ vecs[0]
            order = np.argsort(-sims)
            explicit = re.search(r"\b(remember|recall|told you|what('s| is) my|who am i)\b", self.said, re.I)
            if sims[order[0]] >= (0.15 if explicit else 0.35):
                picked = [yours[order[0]]] + [yours[i] for i in order[1:2] if sims[i] >= 0.3]
                remembered = " And ".join(picked)
                return self.stock("remember", facts=remembered) or f"{remembered}"
        if re.search(r"\b(remember|recall|told you|erinnerst|weißt du noch)\b", self.said, re.I):
            return self.stock("not_told")
        return None

    def care(self, text: str, mood: str, candidates: list[tuple[float, CardLine]], name: str | None) -> str:
        """A feeling: the card's own example of the same mood if one is close, else an empathetic line."""
        negative = ("sad", "worry")
        same = [
            (f, ln) for f, ln in candidates
            if ln.kind == "example" and ln.mood is not None
            and (ln.mood == mood or (ln.mood in negative and mood in negative))
        ]
        min_fit = _FEELING_FIT - self.gen.fit["example"]
        line = self.choose_line([(f, ln) for f, ln in same], min_fit=min_fit)
        if line is None and candidates:
            line = self.choose_line([c for c in candidates if c[1].kind == "example"], min_fit=0.1)
        if line is not None:
            return self.personal(line.say, name)
        topic = feeling_topic(text) if self.voice.language == "en" else None
        move = {"sad": "care_sad", "worry": "care_worry", "happy": "care_happy", "fine": "care_fine"}[mood]
        if topic and move != "care_fine":
            line = self.stock(move + "_topic", topic=topic, Topic=_cap(topic))
            if line:
                return line
        return self.stock(move) or self.own_line(candidates)

    def own_line(self, candidates: list[tuple[float, CardLine]] | None = None) -> str:
        """For a card whose language has no stock lines: the closest of its own lines not said lately."""
        pool = [ln.say for _, ln in (candidates or []) if ln.kind in ("example", "greeting")]
        pool += [e.response for e in self.request.examples] + [g for g in self.request.greetings if g.strip()]
        for line in pool:
            if self.fresh(line):
                return line
        if pool:
            return min(pool, key=self.last_use)
        return "…"  # a card with no lines at all, in a language without stock lines
