// The `{{name}}` plugin.
//
// `validate` rejects an event without a `programId` attribute. `transform` looks the
// program up in core data: a store error asks for a retry, an unknown program drops the
// event, a known one gets its `programName` and a `label` (config key `label`, default
// `checked`) appended to the attributes.
//
// Built against bindings/plugin.h, which `wit-bindgen c` generates from wit/. Ownership
// follows the canonical ABI: an export owns its arguments (free them or move them into the
// result); what it returns, error strings included, must be malloc'ed, because the
// generated post-return function frees it; what an import returns belongs to the caller.

#include <stdlib.h>
#include <string.h>

#include "plugin.h"

typedef exports_adtrack_plugin_handler_event_t event_t;
typedef exports_adtrack_plugin_handler_plugin_error_t plugin_error_t;
typedef plugin_list_tuple2_string_string_t attributes_t;

static bool is(plugin_string_t text, const char *name) {
  return text.len == strlen(name) && memcmp(text.ptr, name, text.len) == 0;
}

// Fills `err` with `tag` and `prefix` + `detail` (malloc'ed); returns false.
static bool refuse(plugin_error_t *err, uint8_t tag, const char *prefix, plugin_string_t detail) {
  size_t len = strlen(prefix);
  uint8_t *text = malloc(len + detail.len);
  if (text == NULL) abort();
  memcpy(text, prefix, len);
  memcpy(text + len, detail.ptr, detail.len);
  err->tag = tag;
  err->val.reject = (plugin_string_t){text, len + detail.len};  // one layout for every tag
  return false;
}

// The value of the event's `programId`, or NULL with a rejection in `err`.
static const plugin_string_t *program_id(const attributes_t *attributes, plugin_error_t *err) {
  for (size_t i = 0; i < attributes->len; i++) {
    if (is(attributes->ptr[i].f0, "programId")) return &attributes->ptr[i].f1;
  }
  plugin_string_t none = {NULL, 0};
  refuse(err, ADTRACK_PLUGIN_TYPES_PLUGIN_ERROR_REJECT, "missing programId", none);
  return NULL;
}

// Appends `name` = a copy of `value`.
static void append(attributes_t *attributes, const char *name, plugin_string_t value) {
  attributes->ptr = realloc(attributes->ptr, (attributes->len + 1) * sizeof(attributes->ptr[0]));
  if (attributes->ptr == NULL) abort();
  plugin_string_dup(&attributes->ptr[attributes->len].f0, name);
  plugin_string_dup_n(&attributes->ptr[attributes->len].f1, (const char *)value.ptr, value.len);
  attributes->len++;
}

bool exports_adtrack_plugin_handler_validate(event_t *event, plugin_error_t *err) {
  bool ok = program_id(&event->attributes, err) != NULL;
  exports_adtrack_plugin_handler_event_free(event);
  return ok;
}

bool exports_adtrack_plugin_handler_transform(event_t *event,
                                              exports_adtrack_plugin_handler_list_event_t *ret,
                                              plugin_error_t *err) {
  const plugin_string_t *id = program_id(&event->attributes, err);
  if (id == NULL) {
    exports_adtrack_plugin_handler_event_free(event);
    return false;
  }
  plugin_string_t key = *id, lookup_error;
  plugin_option_list_tuple2_string_string_t record;
  if (!adtrack_plugin_core_data_lookup(&key, &record, &lookup_error)) {
    refuse(err, ADTRACK_PLUGIN_TYPES_PLUGIN_ERROR_RETRY, "core data unavailable: ", lookup_error);
    plugin_string_free(&lookup_error);
    exports_adtrack_plugin_handler_event_free(event);
    return false;
  }
  if (!record.is_some) {  // an unknown program: drop the event
    exports_adtrack_plugin_handler_event_free(event);
    ret->ptr = NULL;
    ret->len = 0;
    return true;
  }
  for (size_t i = 0; i < record.val.len; i++) {
    if (is(record.val.ptr[i].f0, "programName")) {
      append(&event->attributes, "programName", record.val.ptr[i].f1);
      break;
    }
  }
  plugin_option_list_tuple2_string_string_free(&record);

  plugin_string_t label_key, label;
  plugin_string_set(&label_key, "label");
  if (adtrack_plugin_config_get(&label_key, &label)) {
    append(&event->attributes, "label", label);
    plugin_string_free(&label);
  } else {
    plugin_string_t checked;
    plugin_string_set(&checked, "checked");
    append(&event->attributes, "label", checked);
  }

  ret->ptr = malloc(sizeof(*event));
  if (ret->ptr == NULL) abort();
  ret->ptr[0] = *event;  // the output owns the event's memory now
  ret->len = 1;
  return true;
}
