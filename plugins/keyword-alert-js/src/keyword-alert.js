// keyword-alert: a zoomhost plugin written in JavaScript.
//
// It exports the same `zoomhost:plugin/guest@0.2.0` interface as the Rust plugins
// (`wit/plugin.wit`) and imports only `zoomhost:plugin/host@0.2.0`; `build.sh` beside
// this folder's `package.json` turns it into a WebAssembly component with
// componentize-qjs (QuickJS).
//
// * Subscribes to the transcript of every RTMS stream (and to no events).
// * Config `keywords` (required): comma-separated words or phrases, matched
//   case-insensitively as whole words ("cut" matches "Cut!" but not "cutting").
// * For each keyword found in a transcript segment it logs one warn line, in the order
//   the keywords are configured:
//     alert keyword="budget" stream=<stream id> user="Ada" text="...the budget..."
//   where keyword, user and text are JSON strings.
//
// WIT -> JS conventions used here: records are objects with camelCase fields, enums are
// their case names as strings, `option<T>` is `T` or `null`, and a `result<_, string>`
// export returns normally for `ok` and throws a string for `err`.

import { log, configGet } from 'zoomhost:plugin/host@0.2.0';

const NAME = 'keyword-alert';
const VERSION = '0.1.0';

/** The configured keywords: `{ keyword, pattern }`, lower-cased, de-duplicated, in order. */
let keywords = [];

/** A character that continues a word: a keyword glued to one is not a match. */
const WORD_CHAR = '[\\p{L}\\p{M}\\p{N}_]';

/** `text` with every character that is special in a RegExp escaped. */
function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Parses the `keywords` config value: comma-separated, surrounding blanks ignored, inner
 * runs of blanks collapsed, empty entries skipped, duplicates (case-insensitively)
 * dropped, order kept.
 */
function parseKeywords(value) {
  const seen = new Set();
  const out = [];
  for (const raw of value.split(',')) {
    const keyword = raw.trim().replace(/\s+/gu, ' ').toLowerCase();
    if (keyword.length === 0 || seen.has(keyword)) {
      continue;
    }
    seen.add(keyword);
    // A blank inside a phrase matches any run of white space.
    const body = escapeRegExp(keyword).replace(/ /g, '\\s+');
    out.push({
      keyword,
      pattern: new RegExp(`(?<!${WORD_CHAR})${body}(?!${WORD_CHAR})`, 'iu'),
    });
  }
  return out;
}

/**
 * The text of an exception, for a `result` error: the host logs and counts it, and the
 * instance keeps running.
 */
function errText(e) {
  if (typeof e === 'string') {
    return e;
  }
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

/** Reads the config; throws (a string) when `keywords` is missing or empty. */
function configure() {
  keywords = parseKeywords(configGet('keywords') ?? '');
  if (keywords.length === 0) {
    throw 'config key `keywords` is not set or has no keywords; set it to a comma-separated list, e.g. keywords = "budget, deadline"';
  }
  log(
    'info',
    `watching ${keywords.length} keyword(s): ${keywords.map((k) => JSON.stringify(k.keyword)).join(', ')}`,
  );
}

/** One RTMS stream's transcript, watched for keywords. */
class MediaSession {
  /** @param {object} info the `stream-info` record */
  constructor(info) {
    this.streamId = info.streamId;
  }

  /** Logs one alert per configured keyword found in the segment. */
  onTranscript(segment) {
    try {
      for (const { keyword, pattern } of keywords) {
        if (pattern.test(segment.text)) {
          log(
            'warn',
            `alert keyword=${JSON.stringify(keyword)} stream=${this.streamId} ` +
              `user=${JSON.stringify(segment.userName)} text=${JSON.stringify(segment.text)}`,
          );
        }
      }
    } catch (e) {
      throw errText(e);
    }
  }

  // Only transcripts are subscribed to; the other handlers accept and ignore deliveries.
  onAudio(_frame) {}
  onVideo(_frame) {}
  onShare(_frame) {}
  onChat(_message) {}
  onParticipantJoin(_who) {}
  onParticipantLeave(_who) {}
  onActiveSpeaker(_who) {}
  onStreamState(_state) {}
}

/** The `zoomhost:plugin/guest@0.2.0` export. */
export const guest = {
  metadata() {
    return {
      name: NAME,
      version: VERSION,
      events: [],
      media: ['transcript'],
      wantedHosts: [],
      configKeys: ['keywords'],
    };
  },

  init() {
    try {
      configure();
    } catch (e) {
      throw errText(e);
    }
  },

  handleEvent(_event) {
    // Subscribes to no events, so the host never calls this.
  },

  MediaSession,

  snapshot() {
    // The keywords come from config on every init: no state to carry over.
    return null;
  },

  restore(_state) {},
};
