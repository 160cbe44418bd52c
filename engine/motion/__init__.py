"""Motion: image sequences become animated skeletons, and animations move onto other characters."""
