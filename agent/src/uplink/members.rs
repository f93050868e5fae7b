//! The member directory over a link, in pages: every `list_members` this agent sends asks for
//! pages of [`MAX_MEMBERS_PAGE`], and the link joins the pages into one `members` frame before
//! whoever asked sees it. A whole directory in one frame passed the 8 MiB WebSocket cap at
//! about 8,000 members (each ~1 KB with its signed statements), after which no agent could
//! read it. A broker from before paging ignores `limit` and answers whole, with no `next`.

use claudemesh_protocol::frames::{
    ClientFrame, ErrorCode, ErrorFrame, FormerMember, MemberInfo, ServerFrame,
};
use claudemesh_protocol::limits::MAX_MEMBERS_PAGE;

use super::End;
use super::link::Link;

/// Most members a paged directory may hold before the agent refuses it: a broker that keeps
/// answering with `next` cannot make the agent hold more than this (about 200 MB).
pub const MAX_DIRECTORY_MEMBERS: usize = 200_000;

/// The first `list_members` of a listing (req `req`), asking for a page.
pub(crate) fn list_members(req: u64) -> ClientFrame {
    page(req, None)
}

/// A `list_members` asking for the page after `cursor`.
fn page(req: u64, cursor: Option<String>) -> ClientFrame {
    // MAX_MEMBERS_PAGE is 500: it fits a u32.
    ClientFrame::ListMembers { req, cursor, limit: Some(MAX_MEMBERS_PAGE as u32) }
}

impl Link<'_> {
    /// Passes on a frame, holding back a `members` page that has a `next`: its members (and
    /// those of the pages before) are kept and the next page asked for under a new `req`, to
    /// which the request's pending entry moves. The last page comes back whole: every page's
    /// members, the first page's `former`, `req` the last request's. `None` while pages are
    /// outstanding. A listing past [`MAX_DIRECTORY_MEMBERS`] comes back as an `invalid` error.
    pub(super) async fn whole_members(&mut self, f: ServerFrame) -> Result<Option<ServerFrame>, End> {
        let ServerFrame::Members { req, mut members, mut former, mut next } = f else {
            // A refused page ends its listing: the pages before it go too.
            if let Some(req) = f.req() {
                self.member_pages.remove(&req);
            }
            return Ok(Some(f));
        };
        if members.is_empty() {
            // A page with nothing on it ends the listing, whatever its `next` says.
            next = None;
        }
        let mut after = None;
        if let Some(Paged { members: mut before, former: before_former, cursor }) =
            self.member_pages.remove(&req)
        {
            before.append(&mut members);
            members = before;
            // The first page's, as the broker sends them (later pages have none).
            former = before_former;
            after = Some(cursor);
        }
        let refused = if members.len() > MAX_DIRECTORY_MEMBERS {
            Some(format!("the broker listed more than {MAX_DIRECTORY_MEMBERS} members"))
        } else if let (Some(prev), Some(n)) = (&after, &next)
            && n <= prev
        {
            // Pages go in member_id order: a cursor that does not advance would page forever.
            Some(format!("the broker's directory pages did not advance (after {prev:?} came {n:?})"))
        } else {
            None
        };
        if let Some(why) = refused {
            tracing::warn!(mesh = self.mesh_id, "{why}; the directory was refused");
            return Ok(Some(ServerFrame::Error(ErrorFrame {
                req: Some(req),
                code: ErrorCode::Invalid,
                message: format!("{why}; the directory was refused"),
                retry_after_ms: None,
            })));
        }
        let Some(cursor) = next else {
            return Ok(Some(ServerFrame::Members { req, members, former, next: None }));
        };
        // Nobody waits for this listing any more (gone, or a caller that gave up): stop paging.
        let Some(p) = self.pending.remove(&req) else { return Ok(None) };
        if matches!(&p, super::link::Pending::Reply(tx) if tx.is_closed()) {
            return Ok(None);
        }
        let req = self.next_req();
        self.pending.insert(req, p);
        self.member_pages.insert(req, Paged { members, former, cursor: cursor.clone() });
        self.send(&page(req, Some(cursor))).await?;
        Ok(None)
    }
}

/// A listing's pages so far, kept under the `req` of the page asked for next.
#[derive(Debug)]
pub(crate) struct Paged {
    members: Vec<MemberInfo>,
    /// The first page's former members.
    former: Vec<FormerMember>,
    /// The cursor the next page was asked after.
    cursor: String,
}
