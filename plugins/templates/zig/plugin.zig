//! The `{{name}}` plugin.
//!
//! `validate` rejects an event without a `programId` attribute. `transform` looks the
//! program up in core data: a store error asks for a retry, an unknown program drops the
//! event, a known one gets its `programName` and a `label` (config key `label`, default
//! `checked`) appended to the attributes.
//!
//! Built over the C bindings `wit-bindgen c` generates from wit/: `plugin.h` becomes the
//! module `plugin` through `zig translate-c`. Ownership follows the canonical ABI: an export
//! owns its arguments (free them or move them into the result); what it returns, error
//! strings included, must come from `std.c.malloc`; what an import returns belongs to the
//! caller.

const std = @import("std");
const c = @import("plugin");

const Event = c.exports_adtrack_plugin_handler_event_t;
const PluginError = c.exports_adtrack_plugin_handler_plugin_error_t;
const Attributes = c.plugin_list_tuple2_string_string_t;
const Attribute = c.plugin_tuple2_string_string_t;

export fn exports_adtrack_plugin_handler_validate(event: *Event, err: *PluginError) bool {
    defer c.exports_adtrack_plugin_handler_event_free(event);
    _ = programId(&event.attributes, err) orelse return false;
    return true;
}

export fn exports_adtrack_plugin_handler_transform(
    event: *Event,
    ret: *c.exports_adtrack_plugin_handler_list_event_t,
    err: *PluginError,
) bool {
    var key = programId(&event.attributes, err) orelse {
        c.exports_adtrack_plugin_handler_event_free(event);
        return false;
    };
    var record: c.plugin_option_list_tuple2_string_string_t = undefined;
    var lookup_error: c.plugin_string_t = undefined;
    if (!c.adtrack_plugin_core_data_lookup(&key, &record, &lookup_error)) {
        defer c.plugin_string_free(&lookup_error);
        c.exports_adtrack_plugin_handler_event_free(event);
        return refuse(err, c.ADTRACK_PLUGIN_TYPES_PLUGIN_ERROR_RETRY, "core data unavailable: ", bytes(lookup_error));
    }
    if (!record.is_some) { // an unknown program: drop the event
        c.exports_adtrack_plugin_handler_event_free(event);
        ret.ptr = null;
        ret.len = 0;
        return true;
    }
    defer c.plugin_option_list_tuple2_string_string_free(&record);
    for (items(record.val)) |field| {
        if (std.mem.eql(u8, bytes(field.f0), "programName")) {
            append(&event.attributes, "programName", bytes(field.f1));
            break;
        }
    }

    var label_key = c.plugin_string_t{ .ptr = @constCast("label"), .len = 5 };
    var label: c.plugin_string_t = undefined;
    if (c.adtrack_plugin_config_get(&label_key, &label)) {
        defer c.plugin_string_free(&label);
        append(&event.attributes, "label", bytes(label));
    } else {
        append(&event.attributes, "label", "checked");
    }

    const out: [*]Event = @ptrCast(@alignCast(std.c.malloc(@sizeOf(Event)) orelse std.c.abort()));
    out[0] = event.*; // the output owns the event's memory now
    ret.ptr = out;
    ret.len = 1;
    return true;
}

/// The value of the event's `programId`; null with a rejection in `err` otherwise.
fn programId(attributes: *const Attributes, err: *PluginError) ?c.plugin_string_t {
    for (items(attributes.*)) |pair| {
        if (std.mem.eql(u8, bytes(pair.f0), "programId")) return pair.f1;
    }
    _ = refuse(err, c.ADTRACK_PLUGIN_TYPES_PLUGIN_ERROR_REJECT, "missing programId", "");
    return null;
}

/// Sets `err` to `tag` with the reason `prefix` ++ `detail` (`malloc`ed); always false.
fn refuse(err: *PluginError, tag: u8, prefix: []const u8, detail: []const u8) bool {
    const len = prefix.len + detail.len;
    const text: [*]u8 = @ptrCast(std.c.malloc(@max(len, 1)) orelse std.c.abort());
    @memcpy(text[0..prefix.len], prefix);
    @memcpy(text[prefix.len..len], detail);
    err.tag = tag;
    err.val.reject = .{ .ptr = text, .len = len }; // one layout for every tag
    return false;
}

/// Appends `name` = a copy of `value`.
fn append(attributes: *Attributes, name: []const u8, value: []const u8) void {
    const grown = std.c.realloc(@ptrCast(attributes.ptr), (attributes.len + 1) * @sizeOf(Attribute)) orelse std.c.abort();
    attributes.ptr = @ptrCast(@alignCast(grown));
    c.plugin_string_dup_n(&attributes.ptr[attributes.len].f0, name.ptr, name.len);
    c.plugin_string_dup_n(&attributes.ptr[attributes.len].f1, value.ptr, value.len);
    attributes.len += 1;
}

fn bytes(s: c.plugin_string_t) []const u8 {
    return if (s.len == 0) "" else s.ptr[0..s.len];
}

fn items(list: c.plugin_list_tuple2_string_string_t) []const Attribute {
    return if (list.len == 0) &.{} else list.ptr[0..list.len];
}
