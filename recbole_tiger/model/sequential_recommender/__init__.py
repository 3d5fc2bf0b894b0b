from recbole_tiger.model.sequential_recommender.tiger import TIGER

__all__ = ["TIGER"]
