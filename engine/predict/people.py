"""Who is in a photo: the person boxes and masks the pose crops and the bundles use, and the
notes that say when nobody, or more people than kept, were found."""

from __future__ import annotations

from engine.person import Person, manual, people_from_foreground, whole_image


def find_people(work, bbox, all_people: bool) -> list[Person]:
    """The people to keep for `work` (a PhotoWork); sets work.people_found and adds notes."""
    hw = work.photo.rgb.shape[:2]
    foreground = work.seg > 0 if work.seg is not None else None
    if bbox is not None:
        work.people_found = 1
        return [manual(bbox, hw, foreground)]
    if foreground is None:
        work.people_found = 1
        work.notes.append("segmentation not run: the person box and mask are the whole photo")
        return [whole_image(hw)]
    people = people_from_foreground(foreground)
    work.people_found = len(people)
    if not people:
        work.notes.append("no person found in the segmentation: pose used the whole photo and the "
                          "mask is empty")
        fallback = whole_image(hw)
        fallback.mask = foreground.copy()
        fallback.area = 0
        return [fallback]
    if len(people) > 1 and not all_people:
        work.notes.append(f"{len(people)} people found; the largest was kept (--all-people for every one)")
        return people[:1]
    return people
