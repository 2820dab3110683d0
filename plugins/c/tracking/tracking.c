// The `tracking` plugin in C: `enrich` and `validate-tracking` in one component.
// Behaviour, messages and attribute order match the Rust reference in
// plugins/rust/tracking; crates/plugin-engine/tests/all/conformance.rs holds them to it.
//
// Built against `plugin.h`, which `wit-bindgen c` generates from wit/plugin.wit (`cargo xtask
// plugins` writes it to target/plugin-build/c-bindings/). Ownership follows the canonical ABI:
// an exported function owns its arguments (free them or move them into the result); what it
// returns, including error strings, must be heap memory, which the generated post-return
// function frees; what an import returns belongs to the caller.
//
// Config keys:
// - `fields`: comma-separated core-data fields to copy
//   (default `programName,checksum,customerId,customerName`).

#include <stdlib.h>
#include <string.h>

#include "plugin.h"

typedef plugin_list_tuple2_string_string_t attributes_t;
typedef exports_adtrack_plugin_handler_plugin_error_t plugin_error_t;

static const char DEFAULT_FIELDS[] = "programName,checksum,customerId,customerName";
// The longest part of an offending value quoted back in a rejection message, in characters.
#define MAX_SHOWN_CHARS 64

// A growable heap string; its bytes become a plugin_string_t handed to the host.
typedef struct {
  uint8_t *ptr;
  size_t len;
  size_t cap;
} text_t;

static void text_append(text_t *text, const void *bytes, size_t len) {
  if (text->len + len > text->cap) {
    text->cap = (text->len + len) * 2 + 16;
    text->ptr = realloc(text->ptr, text->cap);
    if (text->ptr == NULL) abort();
  }
  memcpy(text->ptr + text->len, bytes, len);
  text->len += len;
}

static void text_append_str(text_t *text, const char *s) { text_append(text, s, strlen(s)); }

static plugin_string_t text_into_string(text_t *text) {
  return (plugin_string_t){text->ptr, text->len};
}

static bool refuse(plugin_error_t *err, uint8_t tag, text_t *reason) {
  err->tag = tag;
  err->val.reject = text_into_string(reason);  // reject, retry and fail share one layout
  return false;
}

static bool equals(plugin_string_t s, const char *name, size_t name_len) {
  return s.len == name_len && memcmp(s.ptr, name, name_len) == 0;
}

static bool is_digit(uint8_t b) { return b >= '0' && b <= '9'; }

static bool is_alphanumeric(uint8_t b) {
  return is_digit(b) || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z');
}

// The value of the first attribute called `name`, or NULL.
static const plugin_string_t *attribute(const attributes_t *attributes, const char *name) {
  for (size_t i = 0; i < attributes->len; i++) {
    if (equals(attributes->ptr[i].f0, name, strlen(name))) return &attributes->ptr[i].f1;
  }
  return NULL;
}

// Removes every attribute called `name` and appends `name` = a copy of `value`.
static void set_attribute(attributes_t *attributes, const uint8_t *name, size_t name_len,
                          const uint8_t *value, size_t value_len) {
  size_t kept = 0;
  for (size_t i = 0; i < attributes->len; i++) {
    if (equals(attributes->ptr[i].f0, (const char *)name, name_len)) {
      plugin_tuple2_string_string_free(&attributes->ptr[i]);
    } else {
      attributes->ptr[kept++] = attributes->ptr[i];
    }
  }
  attributes->ptr = realloc(attributes->ptr, (kept + 1) * sizeof(attributes->ptr[0]));
  if (attributes->ptr == NULL) abort();
  plugin_string_dup_n(&attributes->ptr[kept].f0, (const char *)name, name_len);
  plugin_string_dup_n(&attributes->ptr[kept].f1, (const char *)value, value_len);
  attributes->len = kept + 1;
}

// Appends `value` as a message quotes it: the first 64 characters in double quotes,
// `\0 \t \r \n \\ \"` escaped, other control characters (U+0000-U+001F, U+007F-U+009F) as
// `\u{hex}`, and an ellipsis after the closing quote when the value was cut.
static void append_quoted(text_t *text, plugin_string_t value) {
  static const char HEX[] = "0123456789abcdef";
  size_t i = 0, chars = 0;
  text_append_str(text, "\"");
  while (i < value.len && chars < MAX_SHOWN_CHARS) {
    uint8_t b = value.ptr[i];
    size_t width = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;  // valid UTF-8 from the host
    unsigned code = b;
    if (width == 2) code = ((b & 0x1Fu) << 6) | (value.ptr[i + 1] & 0x3Fu);
    switch (code) {
      case 0: text_append_str(text, "\\0"); break;
      case '\t': text_append_str(text, "\\t"); break;
      case '\r': text_append_str(text, "\\r"); break;
      case '\n': text_append_str(text, "\\n"); break;
      case '\\': text_append_str(text, "\\\\"); break;
      case '"': text_append_str(text, "\\\""); break;
      default:
        if (width <= 2 && (code < 0x20 || (code >= 0x7F && code <= 0x9F))) {
          char escape[8] = {'\\', 'u', '{'};
          size_t n = 3;
          if (code >= 0x10) escape[n++] = HEX[code >> 4];
          escape[n++] = HEX[code & 0xF];
          escape[n++] = '}';
          text_append(text, escape, n);
        } else {
          text_append(text, value.ptr + i, width);
        }
    }
    i += width;
    chars++;
  }
  text_append_str(text, "\"");
  if (i < value.len) text_append_str(text, "\xE2\x80\xA6");  // U+2026 HORIZONTAL ELLIPSIS
}

// Attribute `name` when present, non-empty and every byte `well_formed`; otherwise NULL
// with a rejection in `err`.
static const plugin_string_t *check(const attributes_t *attributes, const char *name,
                                    const char *expected, bool (*well_formed)(uint8_t),
                                    plugin_error_t *err) {
  const plugin_string_t *value = attribute(attributes, name);
  text_t reason = {0};
  if (value == NULL) {
    text_append_str(&reason, "missing ");
    text_append_str(&reason, name);
    refuse(err, ADTRACK_PLUGIN_TYPES_PLUGIN_ERROR_REJECT, &reason);
    return NULL;
  }
  bool ok = value->len > 0;
  for (size_t i = 0; ok && i < value->len; i++) ok = well_formed(value->ptr[i]);
  if (!ok) {
    text_append_str(&reason, "invalid ");
    text_append_str(&reason, name);
    text_append_str(&reason, " ");
    append_quoted(&reason, *value);
    text_append_str(&reason, ": expected ");
    text_append_str(&reason, expected);
    refuse(err, ADTRACK_PLUGIN_TYPES_PLUGIN_ERROR_REJECT, &reason);
    return NULL;
  }
  return value;
}

static const plugin_string_t *program_id(const attributes_t *attributes, plugin_error_t *err) {
  return check(attributes, "programId", "digits", is_digit, err);
}

// Copies the fields named in the comma-separated `fields` from `record` into `attributes`.
static void copy_fields(attributes_t *attributes, plugin_string_t fields,
                        const plugin_list_tuple2_string_string_t *record) {
  size_t start = 0;
  while (start <= fields.len) {
    size_t end = start;
    while (end < fields.len && fields.ptr[end] != ',') end++;
    size_t from = start, to = end;
    while (from < to && strchr(" \t\r\n", fields.ptr[from]) != NULL) from++;
    while (to > from && strchr(" \t\r\n", fields.ptr[to - 1]) != NULL) to--;
    for (size_t i = 0; to > from && i < record->len; i++) {
      if (equals(record->ptr[i].f0, (const char *)fields.ptr + from, to - from)) {
        set_attribute(attributes, fields.ptr + from, to - from, record->ptr[i].f1.ptr,
                      record->ptr[i].f1.len);
        break;
      }
    }
    start = end + 1;
  }
}

bool exports_adtrack_plugin_handler_validate(exports_adtrack_plugin_handler_event_t *event,
                                             plugin_error_t *err) {
  bool ok = program_id(&event->attributes, err) != NULL;
  exports_adtrack_plugin_handler_event_free(event);
  return ok;
}

bool exports_adtrack_plugin_handler_transform(exports_adtrack_plugin_handler_event_t *event,
                                              exports_adtrack_plugin_handler_list_event_t *ret,
                                              plugin_error_t *err) {
  attributes_t *attributes = &event->attributes;
  const plugin_string_t *id = program_id(attributes, err);
  if (id == NULL) goto refused;

  plugin_option_list_tuple2_string_string_t record;
  plugin_string_t lookup_error;
  plugin_string_t key = *id;
  if (!adtrack_plugin_core_data_lookup(&key, &record, &lookup_error)) {
    text_t reason = {0};
    text_append_str(&reason, "core data unavailable: ");
    text_append(&reason, lookup_error.ptr, lookup_error.len);
    plugin_string_free(&lookup_error);
    refuse(err, ADTRACK_PLUGIN_TYPES_PLUGIN_ERROR_RETRY, &reason);
    goto refused;
  }
  if (!record.is_some) {
    text_t reason = {0};
    text_append_str(&reason, "unknown program ");
    text_append(&reason, id->ptr, id->len);
    refuse(err, ADTRACK_PLUGIN_TYPES_PLUGIN_ERROR_REJECT, &reason);
    goto refused;
  }

  plugin_string_t fields_key, fields;
  plugin_string_set(&fields_key, "fields");
  bool configured = adtrack_plugin_config_get(&fields_key, &fields);
  if (!configured) plugin_string_set(&fields, DEFAULT_FIELDS);
  copy_fields(attributes, fields, &record.val);
  if (configured) plugin_string_free(&fields);
  plugin_option_list_tuple2_string_string_free(&record);

  if (check(attributes, "checksum", "ASCII letters and digits", is_alphanumeric, err) == NULL ||
      check(attributes, "customerId", "digits", is_digit, err) == NULL) {
    goto refused;
  }
  set_attribute(attributes, (const uint8_t *)"valid", 5, (const uint8_t *)"true", 4);

  ret->ptr = malloc(sizeof(*event));
  if (ret->ptr == NULL) abort();
  ret->ptr[0] = *event;  // the output owns the event's memory now
  ret->len = 1;
  return true;

refused:
  exports_adtrack_plugin_handler_event_free(event);
  return false;
}
