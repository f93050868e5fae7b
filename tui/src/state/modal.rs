//! The dialogs over a view: help, the compose box, a yes/no confirmation, a one-line prompt
//! (join, invite, member edit, service scope), a notice (an invite link to copy), a form
//! (deploy, tool call, vault entry, skill share), a service's output and the skill reader.
//! Each holds what it edits; `update` turns Enter into the call.

use claudemesh_protocol::frames::Priority;

use super::ConvKey;

/// A one-line text input with a cursor (in characters).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Field {
    pub text: String,
    pub cursor: usize,
}

impl Field {
    pub fn new(text: impl Into<String>) -> Self {
        let text = text.into();
        let cursor = text.chars().count();
        Field { text, cursor }
    }

    fn byte(&self, char_idx: usize) -> usize {
        self.text.char_indices().nth(char_idx).map_or(self.text.len(), |(b, _)| b)
    }

    pub fn insert(&mut self, c: char) {
        let at = self.byte(self.cursor);
        self.text.insert(at, c);
        self.cursor += 1;
    }

    /// Inserts pasted text; line breaks become spaces unless `multiline`.
    pub fn paste(&mut self, s: &str, multiline: bool) {
        for c in s.chars() {
            match c {
                '\r' => {}
                '\n' if multiline => self.insert('\n'),
                '\n' | '\t' => self.insert(' '),
                c if c.is_control() => {}
                c => self.insert(c),
            }
        }
    }

    pub fn backspace(&mut self) {
        if self.cursor > 0 {
            self.cursor -= 1;
            let at = self.byte(self.cursor);
            self.text.remove(at);
        }
    }

    pub fn delete(&mut self) {
        if self.cursor < self.text.chars().count() {
            let at = self.byte(self.cursor);
            self.text.remove(at);
        }
    }

    /// Ctrl-W: deletes the word before the cursor.
    pub fn delete_word(&mut self) {
        while self.cursor > 0 && self.text.chars().nth(self.cursor - 1).is_some_and(char::is_whitespace) {
            self.backspace();
        }
        while self.cursor > 0 && self.text.chars().nth(self.cursor - 1).is_some_and(|c| !c.is_whitespace()) {
            self.backspace();
        }
    }

    pub fn left(&mut self) {
        self.cursor = self.cursor.saturating_sub(1);
    }

    pub fn right(&mut self) {
        self.cursor = (self.cursor + 1).min(self.text.chars().count());
    }

    pub fn home(&mut self) {
        self.cursor = 0;
    }

    pub fn end(&mut self) {
        self.cursor = self.text.chars().count();
    }
}

/// Which field of the compose box has the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ComposeFocus {
    To,
    #[default]
    Body,
}

/// The compose box: a message to a peer, member, group or everyone of one mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compose {
    /// Mesh slug it is sent on.
    pub mesh: String,
    /// `alice`, a member id, `@group` or `*`.
    pub to: Field,
    pub body: Field,
    pub priority: Priority,
    pub focus: ComposeFocus,
    /// The conversation it answers, to show the send there at once.
    pub conv: Option<ConvKey>,
    /// Why the last Enter did not send.
    pub error: Option<String>,
    /// The send is on its way (Enter again does nothing).
    pub sending: bool,
}

/// What a confirmed dialog does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmAction {
    RemoveMember {
        mesh: String,
        member_id: String,
        name: String,
    },
    Leave {
        mesh: String,
    },
    /// Accept a member's changed key (after comparing safety codes).
    Repin {
        mesh: String,
        member_id: String,
    },
    /// Stop and remove a shared service.
    Undeploy {
        mesh: String,
        name: String,
    },
    /// Fetch a service's code again and restart it.
    UpdateService {
        mesh: String,
        name: String,
    },
    /// Delete one of this member's vault entries.
    VaultDelete {
        mesh: String,
        key: String,
    },
    /// Remove a shared skill (its author or an admin).
    SkillRemove {
        mesh: String,
        name: String,
    },
}

/// A yes/no question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirm {
    pub title: String,
    pub text: String,
    pub action: ConfirmAction,
}

/// What a prompt's Enter does with its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptKind {
    /// Paste a `claudemesh://` invite.
    JoinInvite,
    /// The name to join as, after the invite.
    JoinName { invite: String },
    /// `role max_uses expiry [@group…]` for a new invite of `mesh`.
    InviteCreate { mesh: String },
    /// `role [@group[:role]…]` for a member.
    MemberEdit { mesh: String, member_id: String, name: String },
    /// A service's new scope, in the CLI's form (`peer`, `group:ops`, `members:alice,bob`).
    ServiceScope { mesh: String, name: String },
}

/// A one-line prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub kind: PromptKind,
    pub title: String,
    /// What to type, shown under the field.
    pub hint: String,
    pub field: Field,
    pub error: Option<String>,
    /// Its call is on the way.
    pub busy: bool,
}

/// The dialog over the view, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modal {
    /// Every key of the current view.
    Help,
    Compose(Box<Compose>),
    Confirm(Confirm),
    Prompt(Prompt),
    /// Text to read and copy (an invite link): `lines` are shown as they are, selectable.
    Notice {
        title: String,
        lines: Vec<String>,
    },
    /// A form of several fields (deploy, a tool call).
    Form(Box<super::Form>),
    /// What a service said (a tool call's result, a failed deploy): cleaned lines, red when
    /// `error`.
    Output {
        title: String,
        lines: Vec<String>,
        error: bool,
    },
    /// A shared skill to read: its instructions and files, scrolled.
    Skill(Box<super::SkillRead>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_edits_by_character_not_byte() {
        let mut f = Field::new("héllo");
        f.left();
        f.left();
        f.insert('∂');
        assert_eq!(f.text, "hél∂lo");
        f.home();
        f.delete();
        f.end();
        f.backspace();
        assert_eq!(f.text, "él∂l");
        f.paste(" two\nwords\u{1b}", false);
        assert_eq!(f.text, "él∂l two words");
        f.delete_word();
        assert_eq!(f.text, "él∂l two ");
    }
}
