"""The WebShop site as a state machine: pages, buttons and their text in the original `[SEP]` convention.

Pages and transitions follow the original web app: search -> results (10 per page, at most 50 hits,
"< Prev" / "Next >") -> item (option radio buttons, Description / Features / Reviews [/ Attributes], Buy Now)
-> sub page ("< Prev" back to the item) ; "Back to Search" everywhere but the search and done pages.
Button names are matched in lower case, as the original text environment does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from verl_agent_ext.envs.webshop.catalog import Catalog, Goal, Product
from verl_agent_ext.envs.webshop.reward import Score, score_purchase

SEP = " [SEP] "
SEARCH_RESULTS = 50
RESULTS_PER_PAGE = 10

BACK_TO_SEARCH = "back to search"
NEXT_PAGE = "next >"
PREV_PAGE = "< prev"
BUY_NOW = "buy now"
SUB_PAGES = ("description", "features", "reviews", "attributes")

SEARCH, RESULTS, ITEM, SUB_PAGE, DONE = "search", "results", "item", "item_sub_page", "done"


@dataclass
class ShopSession:
    """One shopper's browsing state for `goal`; `click` and `search` return the purchase score on Buy Now."""

    catalog: Catalog
    goal: Goal
    show_attributes: bool = False
    noun_tagger: str = "lexical"
    page: str = SEARCH
    keywords: str = ""
    hits: list[Product] = field(default_factory=list)
    page_number: int = 1
    product: Product | None = None
    options: dict[str, str] = field(default_factory=dict)
    sub_page: str = ""
    score: Score | None = None

    @property
    def has_search_bar(self) -> bool:
        return self.page == SEARCH

    def clickables(self) -> list[str]:
        """Clickable names on the current page, in page order (buttons, then product links / option values)."""
        if self.page == RESULTS:
            buttons = [BACK_TO_SEARCH] + ([PREV_PAGE] if self.page_number > 1 else []) + [NEXT_PAGE]
            return buttons + [p.asin.lower() for p in self._visible_hits()]
        if self.page == ITEM:
            assert self.product is not None
            buttons = [BACK_TO_SEARCH, PREV_PAGE, *SUB_PAGES[: 4 if self.show_attributes else 3], BUY_NOW]
            values = [value for values in self.product.options.values() for value in values]
            return buttons + [value for value in dict.fromkeys(values) if value not in buttons]
        if self.page == SUB_PAGE:
            return [BACK_TO_SEARCH, PREV_PAGE]
        return []

    def search(self, keywords: str) -> None:
        """Run a search from the search page (the caller checks `has_search_bar` and non-empty keywords)."""
        self.keywords = keywords
        self.hits = self.catalog.search(keywords, SEARCH_RESULTS)
        self._show_results(1)

    def click(self, name: str) -> None:
        """Press clickable `name` (lower case, one of `clickables()`)."""
        if name == BACK_TO_SEARCH:
            self.page, self.keywords, self.hits, self.product, self.options = SEARCH, "", [], None, {}
        elif self.page == RESULTS and name == NEXT_PAGE:
            self._show_results(self.page_number + 1)
        elif self.page == RESULTS and name == PREV_PAGE:
            self._show_results(self.page_number - 1)
        elif self.page == RESULTS:
            self.product = next(p for p in self._visible_hits() if p.asin.lower() == name)
            self.page = ITEM
        elif self.page == ITEM and name == PREV_PAGE:
            self._show_results(self.page_number)
        elif self.page == ITEM and name in SUB_PAGES:
            self.page, self.sub_page = SUB_PAGE, name
        elif self.page == ITEM and name == BUY_NOW:
            assert self.product is not None
            price = self.catalog.prices[self.product.asin]
            self.score = score_purchase(self.product, self.goal, price, self.options, self.noun_tagger)
            self.page = DONE
        elif self.page == ITEM:
            assert self.product is not None
            # An option value shared by two option groups selects the later group, as in the original page.
            option_name = [n for n, values in self.product.options.items() if name in values][-1]
            self.options[option_name] = name
        elif self.page == SUB_PAGE and name == PREV_PAGE:
            self.page = ITEM

    def render(self) -> str:
        """The current page as the original "simple" text observation (visible texts joined by " [SEP] ")."""
        instruction = ["Instruction:", self.goal.instruction_text]
        if self.page == SEARCH:
            return SEP.join(["WebShop", *instruction, "Search"])
        if self.page == DONE:
            assert self.score is not None
            return SEP.join(["Thank you for shopping with us!", "Your score (min 0.0, max 1.0)", f"{self.score.total}"])
        parts = [*instruction, "Back to Search"]
        if self.page == RESULTS:
            parts.append(f"Page {self.page_number} (Total results: {len(self.hits)})")
            parts += (["< Prev"] if self.page_number > 1 else []) + ["Next >"]
            for product in self._visible_hits():
                parts += [product.asin, product.title, product.price_tag]
            return SEP.join(parts)
        assert self.product is not None
        parts.append("< Prev")
        if self.page == ITEM:
            for option_name, values in self.product.options.items():
                parts += [option_name, *values]
            parts += [self.product.title, f"Price: {self.product.price_tag}", f"Rating: {self.product.rating}"]
            parts += [name.capitalize() for name in SUB_PAGES[: 4 if self.show_attributes else 3]]
            parts.append("Buy Now")
        elif self.sub_page == "description":
            parts.append(self.product.description)
        elif self.sub_page == "features":
            parts += self.product.bullet_points
        elif self.sub_page == "reviews":
            for review in self.product.reviews:
                parts += [f'"{review.get("title", "")}"', str(review.get("score", "")), review.get("body", "")]
        else:
            parts += self.product.attributes
            parts += [self.product.category, self.product.query, self.product.product_category]
        return SEP.join(part for part in parts if part)

    def _show_results(self, page_number: int) -> None:
        self.page, self.page_number, self.product, self.options = RESULTS, page_number, None, {}

    def _visible_hits(self) -> list[Product]:
        start = (self.page_number - 1) * RESULTS_PER_PAGE
        return self.hits[start : start + RESULTS_PER_PAGE]
