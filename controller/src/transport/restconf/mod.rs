//! RESTCONF client (RFC 8040).
