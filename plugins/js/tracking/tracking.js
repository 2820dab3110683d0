// The `tracking` plugin in JavaScript: `enrich` and `validate-tracking` in one component.
// Behaviour, messages and attribute order match the Rust reference in
// plugins/rust/tracking; crates/plugin-engine/tests/all/conformance.rs holds them to it.
//
// Built with componentize-js against the `plugin` world of wit/plugin.wit. WIT mapping:
// an export returning `result<T, plugin-error>` returns T or throws the error variant
// (`{ tag: 'reject', val: '...' }`); an import returning `result` returns the ok value or
// throws an error whose `payload` is the err value; `option<T>` is T or undefined;
// `tuple<string, string>` is a two-element array.
//
// Config keys:
// - `fields`: comma-separated core-data fields to copy
//   (default `programName,checksum,customerId,customerName`).

import { get as configGet } from 'adtrack:plugin/config@0.1.2';
import { lookup } from 'adtrack:plugin/core-data@0.1.2';

const DEFAULT_FIELDS = 'programName,checksum,customerId,customerName';
// The longest part of an offending value quoted back in a rejection message, in characters.
const MAX_SHOWN_CHARS = 64;

const DIGITS = /^[0-9]+$/;
const ALPHANUMERIC = /^[A-Za-z0-9]+$/;

export const handler = {
  validate(event) {
    programId(event);
  },

  transform(event) {
    const id = programId(event);
    let record;
    try {
      record = lookup(id);
    } catch (error) {
      throw retry(`core data unavailable: ${error.payload ?? error}`);
    }
    if (record === undefined) {
      throw reject(`unknown program ${id}`);
    }
    const fields = configGet('fields') ?? DEFAULT_FIELDS;
    for (const field of fields.split(',').map((f) => f.trim()).filter((f) => f !== '')) {
      const found = record.find(([name]) => name === field);
      if (found !== undefined) {
        setAttribute(event.attributes, field, found[1]);
      }
    }
    check(event, 'checksum', 'ASCII letters and digits', ALPHANUMERIC);
    check(event, 'customerId', 'digits', DIGITS);
    setAttribute(event.attributes, 'valid', 'true');
    return [event];
  },
};

/** The event's `programId` when it is present and ASCII digits; throws a rejection otherwise. */
function programId(event) {
  return check(event, 'programId', 'digits', DIGITS);
}

/** Attribute `name` when present and matching `wellFormed`; throws a rejection otherwise. */
function check(event, name, expected, wellFormed) {
  const found = event.attributes.find(([key]) => key === name);
  if (found === undefined) {
    throw reject(`missing ${name}`);
  }
  const value = found[1];
  if (!wellFormed.test(value)) {
    throw reject(`invalid ${name} ${quoted(value)}: expected ${expected}`);
  }
  return value;
}

/** Removes every attribute called `name` and appends `name` = `value`. */
function setAttribute(attributes, name, value) {
  const kept = attributes.filter(([key]) => key !== name);
  attributes.length = 0;
  attributes.push(...kept, [name, value]);
}

/**
 * A client-supplied value as it appears in a message: the first 64 characters in double
 * quotes, `\0 \t \r \n \\ \"` escaped, other control characters (U+0000–U+001F,
 * U+007F–U+009F) as `\u{hex}`, and `…` after the closing quote when the value was cut.
 */
function quoted(value) {
  const chars = Array.from(value); // code points, not UTF-16 units
  const escapes = { '\0': '\\0', '\t': '\\t', '\r': '\\r', '\n': '\\n', '\\': '\\\\', '"': '\\"' };
  const shown = chars.slice(0, MAX_SHOWN_CHARS).map((c) => {
    if (c in escapes) return escapes[c];
    const code = c.codePointAt(0);
    if (code < 0x20 || (code >= 0x7f && code <= 0x9f)) return `\\u{${code.toString(16)}}`;
    return c;
  });
  return `"${shown.join('')}"${chars.length > MAX_SHOWN_CHARS ? '…' : ''}`;
}

function reject(reason) {
  return { tag: 'reject', val: reason };
}

function retry(reason) {
  return { tag: 'retry', val: reason };
}
