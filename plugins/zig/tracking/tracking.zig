//! The `tracking` plugin in Zig: `enrich` and `validate-tracking` in one component.
//! Behaviour, messages and attribute order match the Rust reference in
//! plugins/rust/tracking; crates/plugin-engine/tests/all/conformance.rs holds them to it.
//!
//! Built over the C bindings that `wit-bindgen c` generates from wit/plugin.wit: `plugin.c`
//! and `plugin_component_type.o` are linked in, and `plugin.h` is imported as the module
//! `plugin` after `zig translate-c` (`cargo xtask plugins` does both in
//! target/plugin-build/). Ownership follows the canonical ABI: an export owns its arguments
//! (free them or move them into the result); what it returns, including error strings, must
//! come from `malloc`, because the generated post-return function `free`s it; what an
//! import returns belongs to the caller.
//!
//! Config keys:
//! - `fields`: comma-separated core-data fields to copy
//!   (default `programName,checksum,customerId,customerName`).

const std = @import("std");
const c = @import("plugin");

const Event = c.exports_adtrack_plugin_handler_event_t;
const PluginError = c.exports_adtrack_plugin_handler_plugin_error_t;
const Attributes = c.plugin_list_tuple2_string_string_t;
const Attribute = c.plugin_tuple2_string_string_t;

const default_fields = "programName,checksum,customerId,customerName";
/// The longest part of an offending value quoted back in a rejection message, in characters.
const max_shown_chars = 64;

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
    if (!enrichAndCheck(&event.attributes, err)) {
        c.exports_adtrack_plugin_handler_event_free(event);
        return false;
    }
    const out: [*]Event = @ptrCast(@alignCast(std.c.malloc(@sizeOf(Event)) orelse std.c.abort()));
    out[0] = event.*; // the output owns the event's memory now
    ret.ptr = out;
    ret.len = 1;
    return true;
}

/// Looks the program up, copies the configured fields, checks the result and marks it
/// valid; false with `err` set when the event is refused.
fn enrichAndCheck(attributes: *Attributes, err: *PluginError) bool {
    var key = programId(attributes, err) orelse return false;
    var record: c.plugin_option_list_tuple2_string_string_t = undefined;
    var lookup_error: c.plugin_string_t = undefined;
    if (!c.adtrack_plugin_core_data_lookup(&key, &record, &lookup_error)) {
        defer c.plugin_string_free(&lookup_error);
        return refuse(err, .retry, &.{ "core data unavailable: ", bytes(lookup_error) });
    }
    if (!record.is_some) {
        return refuse(err, .reject, &.{ "unknown program ", bytes(key) });
    }
    defer c.plugin_option_list_tuple2_string_string_free(&record);

    var fields_key = c.plugin_string_t{ .ptr = @constCast("fields"), .len = 6 };
    var configured: c.plugin_string_t = undefined;
    const has_config = c.adtrack_plugin_config_get(&fields_key, &configured);
    defer if (has_config) c.plugin_string_free(&configured);
    const fields = if (has_config) bytes(configured) else default_fields;

    var names = std.mem.splitScalar(u8, fields, ',');
    while (names.next()) |untrimmed| {
        const name = std.mem.trim(u8, untrimmed, " \t\r\n");
        if (name.len == 0) continue;
        for (items(record.val)) |field| {
            if (std.mem.eql(u8, bytes(field.f0), name)) {
                setAttribute(attributes, name, bytes(field.f1));
                break;
            }
        }
    }
    _ = check(attributes, "checksum", "ASCII letters and digits", std.ascii.isAlphanumeric, err) orelse return false;
    _ = check(attributes, "customerId", "digits", std.ascii.isDigit, err) orelse return false;
    setAttribute(attributes, "valid", "true");
    return true;
}

/// The event's `programId` when present and ASCII digits; null with a rejection otherwise.
fn programId(attributes: *const Attributes, err: *PluginError) ?c.plugin_string_t {
    return check(attributes, "programId", "digits", std.ascii.isDigit, err);
}

/// Attribute `name` when present, non-empty and every byte `wellFormed`; null with a
/// rejection naming the field and quoting the value otherwise.
fn check(
    attributes: *const Attributes,
    comptime name: []const u8,
    comptime expected: []const u8,
    comptime wellFormed: fn (u8) bool,
    err: *PluginError,
) ?c.plugin_string_t {
    const value = attribute(attributes, name) orelse {
        _ = refuse(err, .reject, &.{"missing " ++ name});
        return null;
    };
    const text = bytes(value);
    var ok = text.len > 0;
    for (text) |b| ok = ok and wellFormed(b);
    if (!ok) {
        var reason = Text{};
        reason.append("invalid " ++ name ++ " ");
        reason.appendQuoted(text);
        reason.append(": expected " ++ expected);
        err.tag = c.ADTRACK_PLUGIN_TYPES_PLUGIN_ERROR_REJECT;
        err.val.reject = reason.string();
        return null;
    }
    return value;
}

/// What the host does with a refused event.
const Refusal = enum { reject, retry };

/// Sets `err` to a refusal whose reason is `parts` joined; always false.
fn refuse(err: *PluginError, kind: Refusal, parts: []const []const u8) bool {
    var reason = Text{};
    for (parts) |part| reason.append(part);
    switch (kind) {
        .reject => {
            err.tag = c.ADTRACK_PLUGIN_TYPES_PLUGIN_ERROR_REJECT;
            err.val.reject = reason.string();
        },
        .retry => {
            err.tag = c.ADTRACK_PLUGIN_TYPES_PLUGIN_ERROR_RETRY;
            err.val.retry = reason.string();
        },
    }
    return false;
}

/// The value of the first attribute called `name`.
fn attribute(attributes: *const Attributes, name: []const u8) ?c.plugin_string_t {
    for (items(attributes.*)) |pair| {
        if (std.mem.eql(u8, bytes(pair.f0), name)) return pair.f1;
    }
    return null;
}

/// Removes every attribute called `name` and appends `name` = a copy of `value`.
fn setAttribute(attributes: *Attributes, name: []const u8, value: []const u8) void {
    var kept: usize = 0;
    for (0..attributes.len) |i| {
        if (std.mem.eql(u8, bytes(attributes.ptr[i].f0), name)) {
            c.plugin_tuple2_string_string_free(&attributes.ptr[i]);
        } else {
            attributes.ptr[kept] = attributes.ptr[i];
            kept += 1;
        }
    }
    const grown = std.c.realloc(@ptrCast(attributes.ptr), (kept + 1) * @sizeOf(Attribute)) orelse std.c.abort();
    attributes.ptr = @ptrCast(@alignCast(grown));
    c.plugin_string_dup_n(&attributes.ptr[kept].f0, name.ptr, name.len);
    c.plugin_string_dup_n(&attributes.ptr[kept].f1, value.ptr, value.len);
    attributes.len = kept + 1;
}

fn bytes(s: c.plugin_string_t) []const u8 {
    return if (s.len == 0) "" else s.ptr[0..s.len];
}

fn items(list: c.plugin_list_tuple2_string_string_t) []const Attribute {
    return if (list.len == 0) &.{} else list.ptr[0..list.len];
}

/// A growable `malloc`ed string, handed to the host as a plugin string.
const Text = struct {
    ptr: ?[*]u8 = null,
    len: usize = 0,
    cap: usize = 0,

    fn append(self: *Text, more: []const u8) void {
        if (self.len + more.len > self.cap) {
            self.cap = (self.len + more.len) * 2 + 16;
            const grown = std.c.realloc(@ptrCast(self.ptr), self.cap) orelse std.c.abort();
            self.ptr = @ptrCast(grown);
        }
        @memcpy(self.ptr.?[self.len..][0..more.len], more);
        self.len += more.len;
    }

    /// Appends `value` as a message quotes it: the first 64 characters in double quotes,
    /// `\0 \t \r \n \\ \"` escaped, other control characters (U+0000-U+001F,
    /// U+007F-U+009F) as `\u{hex}`, and `…` after the closing quote when the value was cut.
    fn appendQuoted(self: *Text, value: []const u8) void {
        const hex = "0123456789abcdef";
        self.append("\"");
        var i: usize = 0;
        var chars: usize = 0;
        while (i < value.len and chars < max_shown_chars) : (chars += 1) {
            const b = value[i];
            // The host hands over valid UTF-8: the lead byte gives the width.
            const width: usize = if (b < 0x80) 1 else if (b < 0xE0) 2 else if (b < 0xF0) 3 else 4;
            const code: u32 = if (width == 2) (@as(u32, b & 0x1F) << 6) | (value[i + 1] & 0x3F) else b;
            switch (code) {
                0 => self.append("\\0"),
                '\t' => self.append("\\t"),
                '\r' => self.append("\\r"),
                '\n' => self.append("\\n"),
                '\\' => self.append("\\\\"),
                '"' => self.append("\\\""),
                else => if (width <= 2 and (code < 0x20 or (code >= 0x7F and code <= 0x9F))) {
                    self.append("\\u{");
                    if (code >= 0x10) self.append(&.{hex[code >> 4]});
                    self.append(&.{hex[code & 0xF]});
                    self.append("}");
                } else {
                    self.append(value[i .. i + width]);
                },
            }
            i += width;
        }
        self.append("\"");
        if (i < value.len) self.append("…");
    }

    fn string(self: Text) c.plugin_string_t {
        return .{ .ptr = self.ptr, .len = self.len };
    }
};
