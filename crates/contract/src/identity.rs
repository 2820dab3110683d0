//! Event identity: the host assigns every event its message id, and the id of each
//! event a plugin emits derives from the id of the event it came from, so no client and
//! no plugin can choose an id that lands on another event's stored item.

use plugin_engine::Event;

/// Separates an event's id from the index of one of several events it was split into.
/// Host-assigned ids never contain it.
pub const FAN_OUT_SEPARATOR: char = '/';

/// Gives the events a plugin chain emitted for the event `input_id` their ids: the
/// input's id when there is one event, `{input_id}/{n}` for the n-th of several (from
/// 0). Whatever ids the plugins set are replaced, in place.
pub fn assign_output_ids(input_id: &str, outputs: &mut [Event]) {
    if let [single] = outputs {
        single.id = input_id.to_owned();
        return;
    }
    for (index, event) in outputs.iter_mut().enumerate() {
        event.id = format!("{input_id}{FAN_OUT_SEPARATOR}{index}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str) -> Event {
        Event {
            id: id.to_owned(),
            ..Event::default()
        }
    }

    #[test]
    fn one_output_keeps_the_input_id_whatever_the_plugin_set() {
        let mut outputs = [event("chosen-by-plugin")];
        assign_output_ids("m1", &mut outputs);
        assert_eq!(outputs[0].id, "m1");
    }

    #[test]
    fn fanned_out_events_cannot_collide_with_another_events_id() {
        let mut outputs = [event("x-1"), event("x-1")];
        assign_output_ids("m1", &mut outputs);
        assert_eq!(outputs.map(|event| event.id), ["m1/0", "m1/1"]);
    }
}
