//! One reader per dataset format.
